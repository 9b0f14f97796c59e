package awsemu

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// xb builds an XML reply.
type xb struct{ strings.Builder }

func (b *xb) open(name string)  { b.WriteString("<" + name + ">") }
func (b *xb) close(name string) { b.WriteString("</" + name + ">") }

// el writes <name>val</name>, skipping empty values.
func (b *xb) el(name, val string) {
	if val == "" {
		return
	}
	b.open(name)
	_ = xml.EscapeText(b, []byte(val))
	b.close(name)
}

func (b *xb) num(name string, v int) { b.el(name, strconv.Itoa(v)) }

// ec2Tags writes an EC2 tagSet.
func (b *xb) ec2Tags(tags map[string]string) {
	b.open("tagSet")
	for _, k := range sortedKeys(tags) {
		b.open("item")
		b.el("key", k)
		b.open("value")
		_ = xml.EscapeText(b, []byte(tags[k]))
		b.close("value")
		b.close("item")
	}
	b.close("tagSet")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// flatList reads PREFIX.1, PREFIX.2, … (EC2 style).
func flatList(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// memberList reads PREFIX.member.1, … (ELBv2 style).
func memberList(form url.Values, prefix string) []string { return flatList(form, prefix+".member") }

// ec2Filters reads Filter.N.Name / Filter.N.Value.M.
func ec2Filters(form url.Values) map[string][]string {
	out := map[string][]string{}
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name := form.Get(p + ".Name")
		if name == "" {
			return out
		}
		out[name] = append(out[name], flatList(form, p+".Value")...)
	}
}

// ec2TagSpec reads the tags of the TagSpecification for resourceType.
func ec2TagSpec(form url.Values, resourceType string) (map[string]string, *apiError) {
	tags := map[string]string{}
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		rt := form.Get(p + ".ResourceType")
		if rt == "" {
			return tags, nil
		}
		if rt != resourceType {
			return nil, errf(400, "InvalidParameterValue", "tag specification resource type %q is not valid here, want %q", rt, resourceType)
		}
		for j := 1; ; j++ {
			k, ok := form[p+".Tag."+strconv.Itoa(j)+".Key"]
			if !ok {
				break
			}
			tags[k[0]] = form.Get(p + ".Tag." + strconv.Itoa(j) + ".Value")
		}
	}
}

// elbKV reads PREFIX.member.N.Key / .Value pairs.
func elbKV(form url.Values, prefix string) map[string]string {
	out := map[string]string{}
	for i := 1; ; i++ {
		p := prefix + ".member." + strconv.Itoa(i)
		k, ok := form[p+".Key"]
		if !ok {
			return out
		}
		out[k[0]] = form.Get(p + ".Value")
	}
}

// page slices items for one page starting at token (an offset) and returns the next token.
func page[T any](items []T, token string, size int) ([]T, string, *apiError) {
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", errf(400, "InvalidNextToken", "the pagination token %q is invalid", token)
		}
		start = n
	}
	end := min(start+size, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

func writeXML(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+body)
}

func writeEC2(w http.ResponseWriter, action, body string) {
	writeXML(w, 200, fmt.Sprintf(`<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>emu-req</requestId>%s</%sResponse>`, action, body, action))
}

func writeEC2Error(w http.ResponseWriter, e *apiError) {
	var b xb
	b.WriteString("<Response><Errors><Error>")
	b.el("Code", e.Code)
	b.el("Message", e.Message)
	b.WriteString("</Error></Errors><RequestID>emu-req</RequestID></Response>")
	writeXML(w, e.Status, b.String())
}

func writeELB(w http.ResponseWriter, action, body string) {
	writeXML(w, 200, fmt.Sprintf(`<%sResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><%sResult>%s</%sResult><ResponseMetadata><RequestId>emu-req</RequestId></ResponseMetadata></%sResponse>`, action, action, body, action, action))
}

func writeELBError(w http.ResponseWriter, e *apiError) {
	var b xb
	b.WriteString("<ErrorResponse><Error><Type>Sender</Type>")
	b.el("Code", e.Code)
	b.el("Message", e.Message)
	b.WriteString("</Error><RequestId>emu-req</RequestId></ErrorResponse>")
	writeXML(w, e.Status, b.String())
}
