package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// origin says where a key's value came from; errors and `config` name it.
type origin struct {
	kind string // "default", "credentials", "file", "env", "flag"
	name string // the credentials or config file, the variable, the flag
}

func (o origin) String() string {
	switch o.kind {
	case "flag":
		return "flag --" + o.name
	case "env":
		return "environment variable " + o.name
	case "file":
		return "config file " + o.name
	case "credentials":
		return "credentials file " + o.name
	}
	return "default"
}

// keyAliases maps renamed keys to their current names. The old names keep working as
// hidden flags, environment variables and config file keys.
var keyAliases = map[string]string{"body-cap": "body-max-bytes"}

// envNames lists the variables key is read from, the first set one winning: METLO_<KEY>,
// the old name's variable, and Metlo's own names (METLO_ADDR from its older install
// snippets, METLO_API_KEY from its CLI).
func envNames(key string) []string {
	names := []string{envFor(key)}
	for old, k := range keyAliases {
		if k == key {
			names = append(names, envFor(old))
		}
	}
	switch key {
	case "metlo-host":
		names = append(names, "METLO_ADDR")
	case "metlo-key":
		names = append(names, "METLO_API_KEY")
	}
	return names
}

// credentialNames maps the names Metlo's credentials files use to config keys, in
// precedence order (METLO_HOST over the older METLO_ADDR, METLO_KEY over the CLI's
// METLO_API_KEY). INTERFACE is what Metlo's traffic-mirror install writes.
var credentialNames = []struct{ name, key string }{
	{"METLO_HOST", "metlo-host"}, {"METLO_ADDR", "metlo-host"},
	{"METLO_KEY", "metlo-key"}, {"METLO_API_KEY", "metlo-key"},
	{"INTERFACE", "interface"},
}

// homeCredentials is the credentials file Metlo's CLI writes (metlo init), read after the
// system one when credentials-file is left at its default.
func homeCredentials() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".metlo", "credentials")
}

// loadConfig resolves the configuration with precedence flags (only those the user set) >
// environment > config file > Metlo credentials files > defaults, then validates it.
// Every error names the key, where its value came from and what the key accepts.
func loadConfig(cmd *cobra.Command) (*Config, error) {
	keys := configKeys()
	vals := map[string]any{}
	origins := map[string]origin{}
	def := reflect.ValueOf(defaultConfig())
	for _, key := range keys {
		f, _ := configField(key)
		vals[key], origins[key] = def.FieldByIndex(f.Index).Interface(), origin{kind: "default"}
	}
	var errs []error
	set := func(key string, raw any, o origin) {
		v, err := convert(key, raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s from %s: %w", key, o, err))
			return
		}
		vals[key], origins[key] = v, o
	}

	file, err := readConfigFile(cmd, keys)
	if err != nil {
		return nil, err
	}
	envVal := func(key string) (string, origin, bool) {
		for _, n := range envNames(key) {
			if v := os.Getenv(n); v != "" {
				return v, origin{"env", n}, true
			}
		}
		return "", origin{}, false
	}
	flags := map[string]*configValue{}
	visit := func(f *pflag.Flag) {
		if cv, ok := f.Value.(*configValue); ok && f.Changed {
			flags[cv.key] = cv
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)

	// Metlo's credentials files rank just above the defaults. The file named by
	// credentials-file (from any source) must exist; the defaults may be missing.
	credPath, credOrigin := defaultConfig().CredentialsFile, origin{kind: "default"}
	if v, ok := file.values["credentials-file"]; ok {
		credPath, credOrigin = fmt.Sprint(v), origin{"file", file.path}
	}
	if v, o, ok := envVal("credentials-file"); ok {
		credPath, credOrigin = v, o
	}
	if cv, ok := flags["credentials-file"]; ok {
		credPath, credOrigin = cv.val.(string), origin{"flag", "credentials-file"}
	}
	paths := []string{credPath}
	if credOrigin.kind == "default" {
		paths = append(paths, homeCredentials())
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		creds, err := readCredentials(p, credOrigin.kind != "default")
		if err != nil {
			return nil, configError(fmt.Errorf("config: credentials-file from %s: %w", credOrigin, err))
		}
		for _, c := range credentialNames {
			if v, ok := creds[c.name]; ok && origins[c.key].name != p {
				set(c.key, v, origin{"credentials", p})
			}
		}
	}
	for _, key := range keys {
		if v, ok := file.values[key]; ok {
			set(key, v, origin{"file", file.path})
		}
		if v, o, ok := envVal(key); ok {
			set(key, v, o)
		}
		if cv, ok := flags[key]; ok {
			vals[key], origins[key] = cv.val, origin{"flag", key}
		}
	}
	if len(errs) > 0 {
		return nil, configError(errors.Join(errs...))
	}

	c := &Config{origins: origins}
	cv := reflect.ValueOf(c).Elem()
	for _, key := range keys {
		f, _ := configField(key)
		cv.FieldByIndex(f.Index).Set(reflect.ValueOf(vals[key]))
	}
	if err := c.validate(); err != nil {
		return nil, configError(err)
	}
	return c, nil
}

// configFile is the YAML config file's keys, after aliases.
type configFile struct {
	path   string
	values map[string]any
}

// readConfigFile reads --config, else METLO_CONFIG, else the default file (which may be
// missing); an unknown key is an error, not silently ignored.
func readConfigFile(cmd *cobra.Command, keys []string) (configFile, error) {
	path, explicit := "", true
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	} else if p := os.Getenv("METLO_CONFIG"); p != "" {
		path = p
	} else {
		path, explicit = defaultConfigFile, false
	}
	out := configFile{path: path, values: map[string]any{}}
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	switch err := v.ReadInConfig(); {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return out, nil
	default:
		return out, configError(fmt.Errorf("read config file %s: %w", path, err))
	}
	settings := v.AllSettings()
	for _, k := range sortedCopy(mapKeys(settings)) {
		key := k
		if newKey, ok := keyAliases[k]; ok {
			if _, both := settings[newKey]; both {
				return out, configError(fmt.Errorf("config file %s: %s is the old name of %s: give one of them", path, k, newKey))
			}
			key = newKey
		}
		if !slices.Contains(keys, key) {
			return out, configError(fmt.Errorf("config file %s: unknown key %q (known keys: %s)", path, k, strings.Join(sortedCopy(keys), ", ")))
		}
		out.values[key] = settings[k]
	}
	return out, nil
}

func mapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// readCredentials reads the KEY=VALUE lines of a Metlo credentials file (`export` and
// quotes allowed; other lines, such as a license key, ignored). A missing file is an
// error only when it was named explicitly.
func readCredentials(path string, explicit bool) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metlo credentials: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(val), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metlo credentials %s: %w", path, err)
	}
	return out, nil
}

// from is where key's value came from.
func (c *Config) from(key string) origin {
	if o, ok := c.origins[key]; ok {
		return o
	}
	return origin{kind: "default"}
}

// explicit reports whether key was given for this run: on the command line or in the
// environment (not the config file, which is the live service's).
func (c *Config) explicit(key string) bool {
	k := c.from(key).kind
	return k == "flag" || k == "env"
}

// at names where key's value came from, for an error; nothing for a default.
func (c *Config) at(key string) string {
	if o := c.from(key); o.kind != "default" {
		return " (from " + o.String() + ")"
	}
	return ""
}
