package tierlimit

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tierlimit/tierlimit/api"
	"github.com/tierlimit/tierlimit/loadctl"
)

// boundFlag is one flag of BindFlags: its name, the Config field it sets
// (which a ConfigError names), that field, its default and its use.
type boundFlag struct {
	field, name string
	target, def any
	usage       string
}

// boundFlags returns the flags BindFlags defines, setting cfg.
func boundFlags(cfg *Config) []boundFlag {
	host, _ := os.Hostname()
	return []boundFlag{
		{"TiersFile", "config", &cfg.TiersFile, "config/tiers.json", "tiers file: window, tiers and API keys; SIGHUP reloads it"},
		{"GossipAddr", "gossip-addr", &cfg.GossipAddr, ":7946", "gossip (memberlist) listen address, UDP and TCP"},
		{"GRPCAddr", "grpc-addr", &cfg.GRPCAddr, ":9090", "gRPC listen address for peers"},
		{"Join", "join", (*joinFlag)(&cfg.Join), nil, "comma-separated host:port gossip seeds; empty = start alone"},
		{"AdvertiseAddr", "advertise-addr", &cfg.AdvertiseAddr, "", "host or IP peers use to reach this node; needed in containers"},
		{"NodeName", "node-name", &cfg.NodeName, host, "unique node name"},
		{"AdminToken", "admin-token", &cfg.AdminToken, "", "bearer token for /system/*"},
		{"ClusterKey", "cluster-key", &cfg.ClusterKey, "", "shared secret: encrypts gossip and authenticates gRPC between peers; without it, peer ports stay on loopback"},
		{"InsecureOpenCluster", "insecure-open-cluster", &cfg.InsecureOpenCluster, false, "gossip and gRPC beyond this host without a cluster key: anyone who reaches the ports can join and add hits"},
		{"ForwardTimeout", "forward-timeout", &cfg.ForwardTimeout, time.Duration(0), "fixed deadline of a check forwarded to a key's owner; 0 = adapt to the owner's round trips"},
		{"ForwardTimeoutMin", "forward-timeout-min", &cfg.ForwardTimeoutMin, DefaultForwardTimeoutMin, "least the adaptive forward deadline may be"},
		{"ForwardTimeoutMax", "forward-timeout-max", &cfg.ForwardTimeoutMax, DefaultForwardTimeoutMax, "most the adaptive forward deadline may be, and where it starts"},
		{"LeaseTTL", "lease-ttl", &cfg.LeaseTTL, DefaultLeaseTTL, "how long a lease on another node's key lasts; negative (-1s) = no leases, every check goes to the owner"},
		{"MaxKeys", "max-keys", &cfg.MaxKeys, DefaultMaxKeys, "most keys counted at once per store"},
		{"BackupInterval", "backup-interval", &cfg.BackupInterval, DefaultBackupInterval, "how often the counts that changed are copied to the member that would own them if this one failed"},
		{"QuorumGrace", "quorum-grace", &cfg.QuorumGrace, DefaultQuorumGrace, "how long a failed member still counts: a side without a majority of the members applies its share of each limit"},
		{"StateFile", "state-file", &cfg.StateFile, "", "file that keeps the health state and the members' addresses across restarts; empty = memory only"},
		{"MaxClockOffset", "max-clock-offset", &cfg.MaxClockOffset, DefaultMaxClockOffset, "how far apart the members' clocks may be; a health state stamped further ahead is refused"},
		{"MaxJobDuration", "max-job-duration", &cfg.MaxJobDuration, api.DefaultMaxJobDuration, "longest a request holds its concurrency slot when its end never comes"},
		{"Capacity", "capacity", &cfg.Capacity, 0, "jobs this instance runs at once: its load signal is the requests in flight over this; 0 = no signal"},
		{"QueueWait", "queue-wait", &cfg.QueueWait, time.Duration(0), "with -capacity: run at most that many requests at once, hold the rest up to this long, paid tiers first, and refuse free ones still waiting when the cluster goes DEGRADED; 0 = no queue"},
		{"AutoHigh", "auto-high", &cfg.AutoHigh, loadctl.DefaultHigh, "with a load signal, the cluster goes DEGRADED when its demand stays at or above this"},
		{"AutoLow", "auto-low", &cfg.AutoLow, loadctl.DefaultLow, "... and back to NORMAL when its demand stays at or below this"},
		{"AutoUpHold", "auto-up-hold", &cfg.AutoUpHold, loadctl.DefaultUpHold, "how long the demand must stay at or above -auto-high"},
		{"AutoDownHold", "auto-down-hold", &cfg.AutoDownHold, loadctl.DefaultDownHold, "how long the demand must stay at or below -auto-low"},
	}
}

// flagFor returns the flag BindFlags defines for the Config field called
// field, or "" if there is none, so that a ConfigError can name the flag.
func flagFor(field string) string {
	for _, f := range boundFlags(new(Config)) {
		if f.field == field {
			return f.name
		}
	}
	return ""
}

// BindFlags defines on fs the flags that set cfg, the same for every
// program built on the Limiter (cmd/node does it), and sets cfg to their
// defaults:
//
//	-config config/tiers.json   TiersFile
//	-gossip-addr :7946          GossipAddr (a cluster member by default)
//	-grpc-addr :9090            GRPCAddr
//	-join host:port,...         Join
//	-advertise-addr host        AdvertiseAddr
//	-node-name <hostname>       NodeName
//	-admin-token token          AdminToken
//	-cluster-key secret         ClusterKey
//	-insecure-open-cluster      InsecureOpenCluster
//	-forward-timeout 0          ForwardTimeout (0: adaptive)
//	-forward-timeout-min 1ms    ForwardTimeoutMin
//	-forward-timeout-max 4ms    ForwardTimeoutMax
//	-lease-ttl 1s               LeaseTTL
//	-max-keys 1000000           MaxKeys
//	-max-clock-offset 500ms     MaxClockOffset
//	-state-file path            StateFile
//	-quorum-grace 30s           QuorumGrace
//	-backup-interval 100ms      BackupInterval
//	-max-job-duration 1h        MaxJobDuration
//	-capacity 0                 Capacity
//	-queue-wait 0               QueueWait
//	-auto-high 1                AutoHigh
//	-auto-low 0.75              AutoLow
//	-auto-up-hold 1s            AutoUpHold
//	-auto-down-hold 15s         AutoDownHold
//
// Call FlagsFromEnv after fs.Parse to take the flags not given from the
// environment.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	for _, f := range boundFlags(cfg) {
		usage := f.usage + " (env " + EnvName(f.name) + ")"
		switch t := f.target.(type) {
		case *string:
			fs.StringVar(t, f.name, f.def.(string), usage)
		case *bool:
			*t = f.def.(bool)
			fs.Var((*boolFlag)(t), f.name, usage)
		case *int:
			*t = f.def.(int)
			fs.Var((*intFlag)(t), f.name, usage)
		case *float64:
			*t = f.def.(float64)
			fs.Var((*floatFlag)(t), f.name, usage)
		case *time.Duration:
			DurationVar(fs, t, f.name, f.def.(time.Duration), usage)
		case flag.Value:
			fs.Var(t, f.name, usage)
		default:
			panic(fmt.Sprintf("tierlimit: flag -%s of type %T", f.name, f.target)) // a programming error
		}
	}
}

// EnvName returns the environment variable that stands for the flag
// called name: upper case, dashes to underscores (-http-addr is HTTP_ADDR).
func EnvName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// FlagsFromEnv sets every flag of fs that was not given on the command line
// from its environment variable (EnvName), if getenv returns a non-empty
// value for it: a flag always beats its variable. Call it after fs.Parse.
// The error names each variable whose value the flag refused.
func FlagsFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// joinFlag is a comma-separated list of seeds.
type joinFlag []string

func (j *joinFlag) String() string {
	if j == nil {
		return ""
	}
	return strings.Join(*j, ",")
}

func (j *joinFlag) Set(s string) error {
	*j = nil
	for _, seed := range strings.Split(s, ",") {
		if seed = strings.TrimSpace(seed); seed != "" {
			*j = append(*j, seed)
		}
	}
	return nil
}

// DurationVar defines a duration flag as flag.DurationVar does, whose
// error for a value without a unit says to give one.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationFlag)(p), name, usage)
}

// BoolVar defines a bool flag as flag.BoolVar does, whose error for a bad
// value says to give true or false.
func BoolVar(fs *flag.FlagSet, p *bool, name string, value bool, usage string) {
	*p = value
	fs.Var((*boolFlag)(p), name, usage)
}

// durationFlag, intFlag, floatFlag and boolFlag are the flag package's values with
// errors that say what would do: the flag package prints them as
// `invalid value "5" for flag -name: <error>`.
type (
	durationFlag time.Duration
	intFlag      int
	floatFlag    float64
	boolFlag     bool
)

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration: give a number with a unit, such as 5ms or 2s")
	}
	*d = durationFlag(v)
	return nil
}

func (n *intFlag) String() string { return strconv.Itoa(int(*n)) }

func (n *intFlag) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a whole number, such as 1000000")
	}
	*n = intFlag(v)
	return nil
}

func (f *floatFlag) String() string { return strconv.FormatFloat(float64(*f), 'g', -1, 64) }

func (f *floatFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number, such as 0.75")
	}
	*f = floatFlag(v)
	return nil
}

func (b *boolFlag) String() string { return strconv.FormatBool(bool(*b)) }

func (b *boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*b = boolFlag(v)
	return nil
}

// IsBoolFlag lets the flag be given as -name, meaning true.
func (b *boolFlag) IsBoolFlag() bool { return true }
