package main

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// A config key's kind decides what it accepts, from any source, and how errors describe it.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindBytes // int or int64 counted in bytes: accepts units (64KiB, 4GiB)
	kindFloat
	kindDuration
	kindInts
	kindStrings
)

// accepts says what a kind takes, for errors and help.
var accepts = map[kind]string{
	kindString:   "text",
	kindBool:     "true or false",
	kindInt:      "a whole number",
	kindBytes:    "a size in bytes: a whole number, optionally with a unit (KiB, MiB, GiB, TiB or kB, MB, GB, TB), e.g. 65536 or 64KiB",
	kindFloat:    "a number",
	kindDuration: "a duration with a unit, e.g. 500ms, 30s, 2m or 1h30m",
	kindInts:     "a list of whole numbers (a YAML list, a repeated flag, or comma-separated)",
	kindStrings:  "a list (a YAML list, a repeated flag, or comma-separated)",
}

// secretKeys are never quoted in errors.
var secretKeys = []string{"metlo-key"}

// keyKind is the kind of the Config field tagged key.
func keyKind(key string) kind {
	f, ok := configField(key)
	if !ok {
		return kindString
	}
	switch f.Type {
	case reflect.TypeFor[time.Duration]():
		return kindDuration
	case reflect.TypeFor[[]int]():
		return kindInts
	case reflect.TypeFor[[]string]():
		return kindStrings
	}
	switch f.Type.Kind() {
	case reflect.Bool:
		return kindBool
	case reflect.Int, reflect.Int64:
		if strings.HasSuffix(key, "-bytes") || key == "memory-limit" {
			return kindBytes
		}
		return kindInt
	case reflect.Float64:
		return kindFloat
	}
	return kindString
}

// configField is the Config field tagged key.
func configField(key string) (reflect.StructField, bool) {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("mapstructure") == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// convert turns a value from any source — a flag's or variable's string, or what YAML
// decoded (string, int, float64, bool, list) — into the Go value of key's field. Its
// error says what the key accepts.
func convert(key string, raw any) (any, error) {
	k := keyKind(key)
	v, err := convertKind(k, raw)
	if err == nil {
		f, _ := configField(key)
		out := reflect.New(f.Type).Elem()
		out.Set(reflect.ValueOf(v).Convert(f.Type))
		return out.Interface(), nil
	}
	if slices.Contains(secretKeys, key) {
		return nil, fmt.Errorf("not %s", accepts[k])
	}
	return nil, fmt.Errorf("%s is not %s", quote(raw), accepts[k])
}

func quote(raw any) string {
	if s, ok := raw.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(raw)
}

var errKind = fmt.Errorf("wrong kind")

func convertKind(k kind, raw any) (any, error) {
	switch k {
	case kindInts, kindStrings:
		var items []any
		switch r := raw.(type) {
		case []any:
			items = r
		case []string:
			for _, s := range r {
				items = append(items, s)
			}
		case string:
			for _, s := range splitList(r) {
				items = append(items, s)
			}
		default:
			items = []any{r}
		}
		if k == kindStrings {
			out := make([]string, 0, len(items))
			for _, it := range items {
				s, err := scalarString(it)
				if err != nil {
					return nil, err
				}
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			return out, nil
		}
		out := make([]int, 0, len(items))
		for _, it := range items {
			n, err := convertKind(kindInt, it)
			if err != nil {
				return nil, err
			}
			out = append(out, int(n.(int64)))
		}
		return out, nil
	}
	if _, isList := raw.([]any); isList {
		return nil, errKind
	}
	switch k {
	case kindString:
		return scalarString(raw)
	case kindBool:
		switch r := raw.(type) {
		case bool:
			return r, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(r)) {
			case "true", "1", "yes", "on":
				return true, nil
			case "false", "0", "no", "off":
				return false, nil
			}
		}
	case kindInt, kindBytes:
		switch r := raw.(type) {
		case int:
			return int64(r), nil
		case int64:
			return r, nil
		case float64:
			if r == math.Trunc(r) && math.Abs(r) < 1<<62 {
				return int64(r), nil
			}
		case string:
			if k == kindBytes {
				return parseBytes(r)
			}
			return strconv.ParseInt(strings.TrimSpace(r), 0, 64)
		}
	case kindFloat:
		switch r := raw.(type) {
		case int:
			return float64(r), nil
		case float64:
			return r, nil
		case string:
			return strconv.ParseFloat(strings.TrimSpace(r), 64)
		}
	case kindDuration:
		switch r := raw.(type) {
		case time.Duration:
			return r, nil
		case int:
			if r == 0 { // a bare number has no unit: only 0 is unambiguous
				return time.Duration(0), nil
			}
		case string:
			return time.ParseDuration(strings.TrimSpace(r))
		}
	}
	return nil, errKind
}

// scalarString accepts the scalars YAML may produce for a text key (a number or a bool).
func scalarString(raw any) (string, error) {
	switch r := raw.(type) {
	case string:
		return r, nil
	case int, int64, float64, bool:
		return fmt.Sprint(r), nil
	}
	return "", errKind
}

// byteUnits are the size suffixes kindBytes accepts.
var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// parseBytes reads 65536, 64KiB, 1.5GiB or 500MB.
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 || f*float64(u.mult) > math.MaxInt64/2 {
				return 0, errKind
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	return strconv.ParseInt(t, 10, 64)
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' })
}

// configValue is the pflag.Value of one config key: it parses as the config file and
// environment do (sizes with units, comma-separated lists), and a repeated list flag
// appends.
type configValue struct {
	key     string
	val     any
	changed bool
}

func (v *configValue) String() string { return renderValue(v.val) }

func (v *configValue) Set(s string) error {
	x, err := convert(v.key, s)
	if err != nil {
		return err
	}
	if k := keyKind(v.key); v.changed && (k == kindInts || k == kindStrings) {
		x = reflect.AppendSlice(reflect.ValueOf(v.val), reflect.ValueOf(x)).Interface()
	}
	v.val, v.changed = x, true
	return nil
}

func (v *configValue) Type() string {
	switch keyKind(v.key) {
	case kindBool:
		return "bool"
	case kindInt:
		return "int"
	case kindBytes:
		return "bytes"
	case kindFloat:
		return "number"
	case kindDuration:
		return "duration"
	case kindInts:
		return "ints"
	case kindStrings:
		return "strings"
	}
	return "string"
}

// renderValue prints a config value the way the flag and environment parsers read it back
// (an empty list as nothing, so --help shows no default for it).
func renderValue(x any) string {
	if v := reflect.ValueOf(x); v.Kind() == reflect.Slice && v.Len() == 0 {
		return ""
	}
	switch x := x.(type) {
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	case []int:
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = strconv.Itoa(n)
		}
		return "[" + strings.Join(s, ",") + "]"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(x)
}

// addConfigFlags defines --config and one flag per Config key (same name, default from
// defaultConfig, parsed like the config file), plus the hidden old names of renamed keys,
// for commands that take the whole configuration.
func addConfigFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(defaultConfig())
	t := def.Type()
	fs.String("config", "", "config file (default "+defaultConfigFile+"; env METLO_CONFIG)")
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("mapstructure")
		if key == "" {
			continue
		}
		help := keyHelp[key] + " (env " + envFor(key) + ")"
		short := ""
		if key == "interface" {
			short = "i"
		}
		f := fs.VarPF(&configValue{key: key, val: def.Field(i).Interface()}, key, short, help)
		if keyKind(key) == kindBool {
			f.NoOptDefVal = "true"
		}
	}
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if k, ok := keyAliases[name]; ok {
			return pflag.NormalizedName(k)
		}
		return pflag.NormalizedName(name)
	})
}
