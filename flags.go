package tierlimit

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// flagFor returns the flag BindFlags defines for the Config field called
// field, or "" if there is none, so that a ConfigError can name the flag.
func flagFor(field string) string {
	switch field {
	case "TiersFile":
		return "config"
	case "GossipAddr":
		return "gossip-addr"
	case "GRPCAddr":
		return "grpc-addr"
	case "AdvertiseAddr":
		return "advertise-addr"
	case "NodeName":
		return "node-name"
	case "AdminToken":
		return "admin-token"
	case "ClusterKey":
		return "cluster-key"
	case "ForwardTimeout":
		return "forward-timeout"
	case "MaxKeys":
		return "max-keys"
	case "Join":
		return "join"
	case "InsecureOpenCluster":
		return "insecure-open-cluster"
	case "MaxClockOffset":
		return "max-clock-offset"
	case "StateFile":
		return "state-file"
	case "QuorumGrace":
		return "quorum-grace"
	case "BackupInterval":
		return "backup-interval"
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
//	-forward-timeout 5ms        ForwardTimeout
//	-max-keys 1000000           MaxKeys
//	-max-clock-offset 500ms     MaxClockOffset
//	-state-file path            StateFile
//	-quorum-grace 30s           QuorumGrace
//	-backup-interval 100ms      BackupInterval
//
// Call FlagsFromEnv after fs.Parse to take the flags not given from the
// environment.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	host, _ := os.Hostname()
	env := func(name, usage string) string { return usage + " (env " + EnvName(name) + ")" }
	fs.StringVar(&cfg.TiersFile, "config", "config/tiers.json", env("config", "tiers file: window, tiers and API keys; SIGHUP reloads it"))
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", ":7946", env("gossip-addr", "gossip (memberlist) listen address, UDP and TCP"))
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", ":9090", env("grpc-addr", "gRPC listen address for peers"))
	fs.Var((*joinFlag)(&cfg.Join), "join", env("join", "comma-separated host:port gossip seeds; empty = start alone"))
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", env("advertise-addr", "host or IP peers use to reach this node; needed in containers"))
	fs.StringVar(&cfg.NodeName, "node-name", host, env("node-name", "unique node name"))
	fs.StringVar(&cfg.AdminToken, "admin-token", "", env("admin-token", "bearer token for /system/*"))
	fs.StringVar(&cfg.ClusterKey, "cluster-key", "", env("cluster-key", "shared secret: encrypts gossip and authenticates gRPC between peers; without it, peer ports stay on loopback"))
	fs.BoolVar(&cfg.InsecureOpenCluster, "insecure-open-cluster", false, env("insecure-open-cluster", "gossip and gRPC beyond this host without a cluster key: anyone who reaches the ports can join and add hits"))
	fs.DurationVar(&cfg.ForwardTimeout, "forward-timeout", DefaultForwardTimeout, env("forward-timeout", "deadline of a check forwarded to a key's owner"))
	fs.IntVar(&cfg.MaxKeys, "max-keys", DefaultMaxKeys, env("max-keys", "most keys counted at once per store"))
	fs.DurationVar(&cfg.BackupInterval, "backup-interval", DefaultBackupInterval, env("backup-interval", "how often the counts that changed are copied to the member that would own them if this one failed"))
	fs.DurationVar(&cfg.QuorumGrace, "quorum-grace", DefaultQuorumGrace, env("quorum-grace", "how long a failed member still counts: a side without a majority of the members applies its share of each limit"))
	fs.StringVar(&cfg.StateFile, "state-file", "", env("state-file", "file that keeps the health state across restarts; empty = memory only"))
	fs.DurationVar(&cfg.MaxClockOffset, "max-clock-offset", DefaultMaxClockOffset, env("max-clock-offset", "how far apart the members' clocks may be; a health state stamped further ahead is refused"))
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
