package awsemu

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// EC2 launch templates, for the Auto Scaling fleets.

// LaunchTemplate is an EC2 launch template; each version keeps its raw data fields
// (LaunchTemplateData.* of the request) so tests can read what the provisioner put there.
type LaunchTemplate struct {
	ID, Name string
	Tags     map[string]string
	Versions []map[string]string // index 0 = version 1
}

func (e *Emulator) launchTemplate(id, name string) *LaunchTemplate {
	if id != "" {
		return e.asg.templates[id]
	}
	for _, lt := range e.asg.templates {
		if name != "" && lt.Name == name {
			return lt
		}
	}
	return nil
}

func ltData(form url.Values) map[string]string {
	d := map[string]string{}
	for k, v := range form {
		if rest, ok := strings.CutPrefix(k, "LaunchTemplateData."); ok {
			d[rest] = v[0]
		}
	}
	return d
}

func (e *Emulator) ltXML(b *xb, lt *LaunchTemplate) {
	b.el("launchTemplateId", lt.ID)
	b.el("launchTemplateName", lt.Name)
	b.num("defaultVersionNumber", 1)
	b.num("latestVersionNumber", len(lt.Versions))
	b.ec2Tags(lt.Tags)
}

func (e *Emulator) createLaunchTemplate(form url.Values) (string, *apiError) {
	name := form.Get("LaunchTemplateName")
	if name == "" || len(name) > 128 {
		return "", errf(400, "InvalidLaunchTemplateName.MalformedException", "launch template name %q is not valid", name)
	}
	if e.launchTemplate("", name) != nil {
		return "", errf(400, "InvalidLaunchTemplateName.AlreadyExistsException", "Launch template name already in use.")
	}
	d := ltData(form)
	if d["ImageId"] == "" {
		return "", errf(400, "InvalidParameterValue", "LaunchTemplateData.ImageId is required by this emulator")
	}
	tags, aerr := ec2TagSpec(form, "launch-template")
	if aerr != nil {
		return "", aerr
	}
	if dryRun(form) {
		return "", errDryRun
	}
	lt := &LaunchTemplate{ID: e.id("lt"), Name: name, Tags: tags, Versions: []map[string]string{d}}
	e.asg.templates[lt.ID] = lt
	var b xb
	b.open("launchTemplate")
	e.ltXML(&b, lt)
	b.close("launchTemplate")
	return b.String(), nil
}

func (e *Emulator) createLaunchTemplateVersion(form url.Values) (string, *apiError) {
	lt := e.launchTemplate(form.Get("LaunchTemplateId"), form.Get("LaunchTemplateName"))
	if lt == nil {
		return "", errf(400, "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist")
	}
	d := ltData(form)
	if src := form.Get("SourceVersion"); src != "" {
		n, err := strconv.Atoi(src)
		if err != nil || n < 1 || n > len(lt.Versions) {
			return "", errf(400, "InvalidLaunchTemplateId.VersionNotFound", "version %s does not exist", src)
		}
		merged := maps.Clone(lt.Versions[n-1])
		maps.Copy(merged, d)
		d = merged
	}
	if dryRun(form) {
		return "", errDryRun
	}
	lt.Versions = append(lt.Versions, d)
	var b xb
	b.open("launchTemplateVersion")
	b.el("launchTemplateId", lt.ID)
	b.num("versionNumber", len(lt.Versions))
	b.close("launchTemplateVersion")
	return b.String(), nil
}

func (e *Emulator) describeLaunchTemplates(form url.Values) (string, *apiError) {
	names, ids := flatList(form, "LaunchTemplateName"), flatList(form, "LaunchTemplateId")
	var sel []*LaunchTemplate
	for _, k := range sortedKeys(e.asg.templates) {
		lt := e.asg.templates[k]
		if (len(names) == 0 || slices.Contains(names, lt.Name)) && (len(ids) == 0 || slices.Contains(ids, lt.ID)) {
			sel = append(sel, lt)
		}
	}
	if len(names)+len(ids) > 0 && len(sel) == 0 {
		return "", errf(400, "InvalidLaunchTemplateName.NotFoundException", "At least one of the launch templates specified in the request does not exist.")
	}
	items, next, err := page(sel, form.Get("NextToken"), e.PageSize)
	if err != nil {
		return "", err
	}
	var b xb
	b.open("launchTemplates")
	for _, lt := range items {
		b.open("item")
		e.ltXML(&b, lt)
		b.close("item")
	}
	b.close("launchTemplates")
	b.el("nextToken", next)
	return b.String(), nil
}

func (e *Emulator) describeLaunchTemplateVersions(form url.Values) (string, *apiError) {
	lt := e.launchTemplate(form.Get("LaunchTemplateId"), form.Get("LaunchTemplateName"))
	if lt == nil {
		return "", errf(400, "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist")
	}
	want := flatList(form, "LaunchTemplateVersion")
	var b xb
	b.open("launchTemplateVersionSet")
	for i, d := range lt.Versions {
		v := strconv.Itoa(i + 1)
		if len(want) > 0 && !slices.Contains(want, v) && !(slices.Contains(want, "$Latest") && i == len(lt.Versions)-1) {
			continue
		}
		b.open("item")
		b.el("launchTemplateId", lt.ID)
		b.el("launchTemplateName", lt.Name)
		b.num("versionNumber", i+1)
		b.open("launchTemplateData")
		b.el("imageId", d["ImageId"])
		b.el("instanceType", d["InstanceType"])
		b.el("userData", d["UserData"])
		if d["IamInstanceProfile.Name"] != "" {
			b.open("iamInstanceProfile")
			b.el("name", d["IamInstanceProfile.Name"])
			b.close("iamInstanceProfile")
		}
		b.open("securityGroupIdSet")
		for j := 1; d["SecurityGroupId."+strconv.Itoa(j)] != ""; j++ {
			b.el("item", d["SecurityGroupId."+strconv.Itoa(j)])
		}
		b.close("securityGroupIdSet")
		b.close("launchTemplateData")
		b.close("item")
	}
	b.close("launchTemplateVersionSet")
	return b.String(), nil
}

func (e *Emulator) deleteLaunchTemplate(form url.Values) (string, *apiError) {
	lt := e.launchTemplate(form.Get("LaunchTemplateId"), form.Get("LaunchTemplateName"))
	if lt == nil {
		return "", errf(400, "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist")
	}
	for _, g := range e.asg.groups {
		if g.LaunchTemplate == lt.ID {
			return "", errf(400, "InvalidLaunchTemplateId.InUse", "launch template %s is used by Auto Scaling group %s", lt.ID, g.Name)
		}
	}
	if dryRun(form) {
		return "", errDryRun
	}
	delete(e.asg.templates, lt.ID)
	var b xb
	b.open("launchTemplate")
	e.ltXML(&b, lt)
	b.close("launchTemplate")
	return b.String(), nil
}

// ---- Auto Scaling (Query protocol, version 2011-01-01) ----

// LaunchTemplates returns a copy of every launch template.
func (e *Emulator) LaunchTemplates() []LaunchTemplate {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []LaunchTemplate
	for _, k := range sortedKeys(e.asg.templates) {
		lt := *e.asg.templates[k]
		lt.Versions = slices.Clone(lt.Versions)
		out = append(out, lt)
	}
	return out
}
