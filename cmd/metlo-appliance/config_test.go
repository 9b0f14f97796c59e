package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const fullKey = "metlo.abcdefghijklmnopqrstuvwxyz0123456789wxyz"

type configCase struct {
	name  string
	args  []string
	env   map[string]string
	file  string // config.yaml contents; "" = no file
	creds string // /opt/metlo/credentials contents; "" = no file
	check func(t *testing.T, c *Config)
	err   string // substring of the expected error
}

// loadFor runs loadConfig with isolated env, config file and credentials file.
func loadFor(t *testing.T, tc configCase) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range configKeys() {
		t.Setenv(envFor(k), "")
	}
	t.Setenv("METLO_CONFIG", "")
	old := defaultConfigFile
	defaultConfigFile = filepath.Join(dir, "config.yaml")
	t.Cleanup(func() { defaultConfigFile = old })
	if tc.file != "" {
		os.WriteFile(defaultConfigFile, []byte(tc.file), 0o600)
	}
	credPath := filepath.Join(dir, "credentials")
	os.WriteFile(credPath, []byte(tc.creds), 0o600)
	t.Setenv("METLO_CREDENTIALS_FILE", credPath)
	t.Setenv("HOME", dir) // no ~/.metlo/credentials of whoever runs the tests
	for _, k := range []string{"METLO_ADDR", "METLO_API_KEY", "METLO_BODY_CAP"} {
		t.Setenv(k, "")
	}
	for k, v := range tc.env {
		t.Setenv(k, v)
	}
	cmd := newConfigCmd()
	if err := cmd.ParseFlags(tc.args); err != nil {
		t.Fatal(err)
	}
	return loadConfig(cmd)
}

func TestConfigPrecedence(t *testing.T) {
	cases := []configCase{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			if c.BodyCap != 64<<10 || c.Capture != "auto" || !slices.Equal(c.Sinks, []string{"jsonl:-"}) || c.FlushTimeout != 30*time.Second || c.Environment != "production" {
				t.Fatalf("defaults wrong: %+v", c)
			}
		}},
		{name: "file over defaults", file: "body-cap: 1000\nenvironment: staging\n", check: func(t *testing.T, c *Config) {
			if c.BodyCap != 1000 || c.Environment != "staging" {
				t.Fatalf("body-cap %d env %q", c.BodyCap, c.Environment)
			}
		}},
		{name: "env over file", file: "body-cap: 1000\n", env: map[string]string{"METLO_BODY_CAP": "2000"}, check: func(t *testing.T, c *Config) {
			if c.BodyCap != 2000 {
				t.Fatalf("body-cap %d, want env's 2000", c.BodyCap)
			}
		}},
		{name: "flag over env and file", args: []string{"--body-cap", "3000"}, file: "body-cap: 1000\n", env: map[string]string{"METLO_BODY_CAP": "2000"}, check: func(t *testing.T, c *Config) {
			if c.BodyCap != 3000 {
				t.Fatalf("body-cap %d, want flag's 3000", c.BodyCap)
			}
		}},
		{name: "unset flags do not override", args: []string{"--capture", "xdp"}, file: "body-cap: 1000\nworkers: 3\n", env: map[string]string{"METLO_WORKERS": "5"}, check: func(t *testing.T, c *Config) {
			if c.BodyCap != 1000 || c.Workers != 5 || c.Capture != "xdp" {
				t.Fatalf("body-cap %d workers %d capture %s", c.BodyCap, c.Workers, c.Capture)
			}
		}},
		{name: "credentials file", creds: "# metlo\nMETLO_HOST=http://metlo.internal:8081\nexport METLO_KEY=\"" + fullKey + "\"\n", check: func(t *testing.T, c *Config) {
			if c.MetloKey != fullKey || !slices.Equal(c.Sinks, []string{"metlo:http://metlo.internal:8081"}) {
				t.Fatalf("key %q sinks %v", c.MetloKey, c.Sinks)
			}
		}},
		{name: "file and env over credentials", creds: "METLO_HOST=http://old:8081\nMETLO_KEY=metlo.old\n", file: "metlo-host: new:8081\n",
			env: map[string]string{"METLO_KEY": fullKey}, check: func(t *testing.T, c *Config) {
				if c.MetloKey != fullKey || !slices.Equal(c.Sinks, []string{"metlo:http://new:8081"}) {
					t.Fatalf("key %q sinks %v", c.MetloKey, c.Sinks)
				}
			}},
		{name: "explicit sinks win over metlo-host", args: []string{"--sink", "jsonl:/tmp/x.jsonl", "--sink", "metlo:http://a:8081"},
			env: map[string]string{"METLO_HOST": "http://b:8081", "METLO_KEY": fullKey}, check: func(t *testing.T, c *Config) {
				if !slices.Equal(c.Sinks, []string{"jsonl:/tmp/x.jsonl", "metlo:http://a:8081"}) {
					t.Fatalf("sinks %v", c.Sinks)
				}
			}},
		{name: "env lists and durations", env: map[string]string{"METLO_SINK": "jsonl:-,jsonl:/tmp/y", "METLO_VXLAN_PORTS": "4789,8472",
			"METLO_FLUSH_TIMEOUT": "5s", "METLO_REDACT_HEADERS": "Authorization,Cookie", "METLO_RATE_LIMIT": "250.5"}, check: func(t *testing.T, c *Config) {
			if !slices.Equal(c.Sinks, []string{"jsonl:-", "jsonl:/tmp/y"}) || !slices.Equal(c.VXLANPorts, []int{4789, 8472}) ||
				c.FlushTimeout != 5*time.Second || !slices.Equal(c.RedactHeaders, []string{"Authorization", "Cookie"}) || c.RateLimit != 250.5 {
				t.Fatalf("got %+v", c)
			}
		}},
		{name: "file lists", file: "vxlan-ports: [4789, 4790]\nredact-fields:\n  - password\n  - ssn\nidle-timeout: 90s\n", check: func(t *testing.T, c *Config) {
			if !slices.Equal(c.VXLANPorts, []int{4789, 4790}) || !slices.Equal(c.RedactFields, []string{"password", "ssn"}) || c.IdleTimeout != 90*time.Second {
				t.Fatalf("got %+v", c)
			}
		}},
		{name: "explicit config flag", args: []string{"--config", "/nonexistent/metlo.yaml"}, err: "/nonexistent/metlo.yaml"},
		{name: "unknown key", file: "body-cap: 1\nbodycap: 2\n", err: `unknown key "bodycap"`},
		{name: "bad capture", env: map[string]string{"METLO_CAPTURE": "pcapng"}, err: "capture must be auto|xdp|afpacket|udp"},
		{name: "bad number", env: map[string]string{"METLO_BODY_CAP": "lots"}, err: `config: body-max-bytes from environment variable METLO_BODY_CAP: "lots" is not a size in bytes`},
		{name: "new name everywhere", args: []string{"--body-max-bytes", "3000"}, file: "body-max-bytes: 1000\n", check: func(t *testing.T, c *Config) {
			if c.BodyCap != 3000 || c.from("body-max-bytes").String() != "flag --body-max-bytes" {
				t.Fatalf("body-max-bytes %d from %s", c.BodyCap, c.from("body-max-bytes"))
			}
		}},
		{name: "old name in a flag", args: []string{"--body-cap", "3000"}, check: func(t *testing.T, c *Config) {
			if c.BodyCap != 3000 {
				t.Fatalf("body-max-bytes %d", c.BodyCap)
			}
		}},
		{name: "old and new names in one file", file: "body-cap: 1\nbody-max-bytes: 2\n", err: "body-cap is the old name of body-max-bytes: give one of them"},
		{name: "sizes with units", args: []string{"--memory-limit", "4GiB"}, env: map[string]string{"METLO_BUFFER_BYTES": "512MiB"},
			file: "queue-bytes: 1.5GiB\nbody-max-bytes: 64KiB\nspool-max-bytes: 10GB\nring-bytes: 8MiB\n", check: func(t *testing.T, c *Config) {
				if c.MemoryLimit != 4<<30 || c.BufferBytes != 512<<20 || c.QueueBytes != 3<<29 || c.BodyCap != 64<<10 || c.SpoolMaxBytes != 10e9 || c.RingBytes != 8<<20 {
					t.Fatalf("got %d %d %d %d %d %d", c.MemoryLimit, c.BufferBytes, c.QueueBytes, c.BodyCap, c.SpoolMaxBytes, c.RingBytes)
				}
			}},
		{name: "bad size in the file", file: "memory-limit: 4 gigs\n", err: `config: memory-limit from config file `},
		{name: "duration without a unit", file: "flush-timeout: 30\n", err: "is not a duration with a unit, e.g. 500ms, 30s, 2m or 1h30m"},
		{name: "list where one value goes", file: "environment: [a, b]\n", err: "config: environment from config file"},
		{name: "bad bool in env", env: map[string]string{"METLO_RAW": "sometimes"}, err: `config: raw from environment variable METLO_RAW: "sometimes" is not true or false`},
		{name: "bools as operators write them", env: map[string]string{"METLO_RAW": "no"}, file: "redact: off\n", check: func(t *testing.T, c *Config) {
			if c.Raw || c.Redact {
				t.Fatalf("raw %v redact %v", c.Raw, c.Redact)
			}
		}},
		{name: "the key is never quoted", file: "metlo-key: [metlo.secretvalue]\n", err: "config: metlo-key from config file"},
		{name: "validation names the source", file: "queue-traces: 0\n", err: "queue-traces must be a positive number, got 0 (from config file "},
		{name: "Metlo's older names in the credentials file", creds: "METLO_ADDR=http://old:8081\nMETLO_API_KEY=" + fullKey + "\nINTERFACE=ens5\nVXLAN_ENABLED=true\nsome-license-key\n",
			check: func(t *testing.T, c *Config) {
				if c.MetloHost != "http://old:8081" || c.MetloKey != fullKey || c.Interface != "ens5" || c.from("interface").kind != "credentials" {
					t.Fatalf("host %q key %q interface %q (%s)", c.MetloHost, c.MetloKey, c.Interface, c.from("interface"))
				}
			}},
		{name: "METLO_HOST wins over METLO_ADDR in one file", creds: "METLO_HOST=http://new:8081\nMETLO_ADDR=http://old:8081\nMETLO_KEY=" + fullKey + "\n",
			check: func(t *testing.T, c *Config) {
				if c.MetloHost != "http://new:8081" {
					t.Fatalf("host %q", c.MetloHost)
				}
			}},
		{name: "Metlo's variable names", env: map[string]string{"METLO_ADDR": "http://m:8081", "METLO_API_KEY": fullKey}, check: func(t *testing.T, c *Config) {
			if c.MetloHost != "http://m:8081" || c.MetloKey != fullKey || c.from("metlo-host").String() != "environment variable METLO_ADDR" {
				t.Fatalf("host %q key %q from %s", c.MetloHost, c.MetloKey, c.from("metlo-host"))
			}
		}},
		{name: "explicit credentials file missing", args: []string{"--credentials-file", "/nonexistent/credentials"},
			err: "config: credentials-file from flag --credentials-file: read metlo credentials: open /nonexistent/credentials: no such file or directory"},
		{name: "no credentials file", args: []string{"--credentials-file", ""}, creds: "METLO_KEY=" + fullKey + "\n", check: func(t *testing.T, c *Config) {
			if c.MetloKey != "" {
				t.Fatalf("key %q read though no credentials file was wanted", c.MetloKey)
			}
		}},
		{name: "sample and pcap", args: []string{"--sample", "--pcap", "x.pcap"}, err: "sample (from flag --sample) and pcap (from flag --pcap) both name the input: give one"},
		{name: "pcap and an interface", args: []string{"--pcap", "x.pcap", "-i", "eth0"},
			err: "config: interface (from flag --interface) sets up live capture, but pcap (from flag --pcap) reads a capture file"},
		{name: "sample and a capture method from env", args: []string{"--sample"}, env: map[string]string{"METLO_CAPTURE": "xdp"},
			err: "config: capture (from environment variable METLO_CAPTURE) sets up live capture, but sample (from flag --sample)"},
		{name: "pcap with the service's config file", args: []string{"--pcap", "x.pcap"}, file: "capture: xdp\ninterface: ens5\n", check: func(t *testing.T, c *Config) {
			if c.Pcap != "x.pcap" {
				t.Fatalf("pcap %q", c.Pcap)
			}
		}},
		{name: "udp capture and an interface", args: []string{"--capture", "udp", "-i", "eth0"}, err: "capture udp (from flag --capture) listens on UDP sockets"},
		{name: "bad duration", file: "flush-timeout: soon\n", err: "flush-timeout"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, err: "log-level must be debug|info|warn|error"},
		{name: "bad sink", args: []string{"--sink", "kafka:x"}, err: "accepted: jsonl, metlo"},
		{name: "metlo sink without key", env: map[string]string{"METLO_HOST": "http://m:8081"}, err: "needs metlo-key"},
		{name: "zero queue", file: "queue-traces: 0\n", err: "queue-traces must be a positive number"},
		{name: "bad spool policy", file: "spool-full: drop-random\n", err: "spool-full must be drop-oldest|drop-newest"},
		{name: "delivery defaults", check: func(t *testing.T, c *Config) {
			if c.RateLimit != 60 || c.RateBurst != 500 || c.MaxInFlight != 2 || c.SpoolDir != "/var/lib/metlo-appliance/spool" ||
				c.SpoolFull != "drop-oldest" || !c.Redact || c.OfflineTimeout != 10*time.Minute || c.RequestTimeout != 10*time.Second {
				t.Fatalf("delivery defaults wrong: %+v", c)
			}
		}},
		{name: "redaction opt-out and memory-only", env: map[string]string{"METLO_REDACT": "false", "METLO_SPOOL_DIR": ""}, file: "spool-dir: /x\n",
			check: func(t *testing.T, c *Config) {
				if c.Redact || c.exporterOptions().NoRedact != true {
					t.Fatalf("redact = %v", c.Redact)
				}
			}},
		{name: "bad port", file: "geneve-ports: [70000]\n", err: "geneve-ports must be ports 1-65535"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadFor(t, tc)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestConfigCommandMasksTheKey(t *testing.T) {
	tc := configCase{env: map[string]string{"METLO_HOST": "http://metlo:8081", "METLO_KEY": fullKey}}
	loadFor(t, tc) // sets up the isolated environment
	cmd := newConfigCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--body-max-bytes", "4096"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"metlo-key: metlo.****wxyz # from environment variable METLO_KEY", "body-max-bytes: 4096 # from flag --body-max-bytes", "sink: ['metlo:http://metlo:8081']", "flush-timeout: 30s", "capture: auto"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, fullKey) || strings.Contains(s, "abcdefgh") {
		t.Fatalf("key leaked:\n%s", s)
	}
	for _, k := range configKeys() {
		if !strings.Contains(s, "\n"+k+":") && !strings.HasPrefix(s, k+":") {
			t.Errorf("output lacks key %s", k)
		}
	}
}

func TestConfigCommandMasksURLCredentials(t *testing.T) {
	tc := configCase{env: map[string]string{"METLO_HOST": "https://ops:hunter2@metlo:8081", "METLO_KEY": fullKey,
		"METLO_SINK": "metlo:https://ops:hunter2@metlo:8081,jsonl:-"}}
	loadFor(t, tc)
	cmd := newConfigCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "metlo:https://****@metlo:8081") ||
		!strings.Contains(s, "metlo-host: https://****@metlo:8081") {
		t.Fatalf("URL credentials shown:\n%s", s)
	}
	// Errors do not show them either.
	_, err := loadFor(t, configCase{env: map[string]string{"METLO_SINK": "metlo:https://ops:hunter2@metlo:8081"}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestMaskKey(t *testing.T) {
	for in, want := range map[string]string{"": "", "metlo.abcd": "metlo.****", "metlo.123456789": "metlo.****6789", "plainsecret": "****cret", "abc": "****"} {
		if got := maskKey(in); got != want {
			t.Errorf("maskKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExporterOptionsCarryConfig(t *testing.T) {
	c, err := loadFor(t, configCase{env: map[string]string{"METLO_HOST": "m:8081", "METLO_KEY": fullKey, "METLO_BATCH_SIZE": "50", "METLO_REDACT_FIELDS": "password"}})
	if err != nil {
		t.Fatal(err)
	}
	o := c.exporterOptions()
	if o.Metlo.Key != fullKey || o.Metlo.BatchTraces != 50 || !slices.Equal(o.RedactFields, []string{"password"}) || o.Sinks[0] != "metlo:http://m:8081" {
		t.Fatalf("options %+v", o)
	}
}
