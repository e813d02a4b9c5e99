package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machineCPU is the machine's CPU time counters, in clock ticks, from the
// first line of /proc/stat.
type machineCPU struct {
	Total   uint64 `json:"total"`
	Idle    uint64 `json:"idle"` // idle and iowait
	Softirq uint64 `json:"softirq"`
	CPUs    int    `json:"cpus"`
}

// parseProcStat reads the "cpu" line of /proc/stat.
func parseProcStat(r io.Reader) (machineCPU, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var m machineCPU
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is already in user and nice.
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return m, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
			}
			m.Total += v
			switch i {
			case 3, 4:
				m.Idle += v
			case 6:
				m.Softirq += v
			}
		}
		return m, nil
	}
	if err := sc.Err(); err != nil {
		return machineCPU{}, err
	}
	return machineCPU{}, errors.New("/proc/stat: no cpu line")
}

// busy returns the share of all CPUs that was not idle from a to b, and
// the share spent in softirq (network packets, for one).
func busy(a, b *machineCPU) (all, softirq float64, ok bool) {
	if a == nil || b == nil || b.Total <= a.Total {
		return 0, 0, false
	}
	total := float64(b.Total - a.Total)
	return (total - float64(b.Idle-a.Idle)) / total, float64(b.Softirq-a.Softirq) / total, true
}

// udpCounters is the machine's UDP counters from /proc/net/snmp.
type udpCounters struct {
	InDatagrams  uint64 `json:"in_datagrams"`
	InErrors     uint64 `json:"in_errors"`
	RcvbufErrors uint64 `json:"rcvbuf_errors"`
}

// parseSNMP reads the Udp lines of /proc/net/snmp: a line of names, then
// a line of values.
func parseSNMP(r io.Reader) (udpCounters, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		var u udpCounters
		for i, v := range f[1:] {
			if i >= len(names) {
				break
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return u, fmt.Errorf("/proc/net/snmp: Udp %s: %w", names[i], err)
			}
			switch names[i] {
			case "InDatagrams":
				u.InDatagrams = n
			case "InErrors":
				u.InErrors = n
			case "RcvbufErrors":
				u.RcvbufErrors = n
			}
		}
		return u, nil
	}
	if err := sc.Err(); err != nil {
		return udpCounters{}, err
	}
	return udpCounters{}, errors.New("/proc/net/snmp: no Udp lines")
}

// parsePids reads name=pid,... into a map.
func parsePids(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, kv := range splitNames(s) {
		name, v, ok := strings.Cut(kv, "=")
		pid, err := strconv.Atoi(v)
		if !ok || name == "" || err != nil || pid < 1 {
			return nil, fmt.Errorf("%q: want name=pid", kv)
		}
		out[name] = pid
	}
	return out, nil
}

// parseProcTicks returns the user and system time, in clock ticks, of a
// /proc/<pid>/stat line. The command name in parentheses may hold spaces,
// so fields are counted from the last ')'.
func parseProcTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' in the stat line")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state (field 3) ... utime (14), stime (15).
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the name, want at least 13", len(f))
	}
	var t uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime or stime %q: %w", s, err)
		}
		t += v
	}
	return t, nil
}

// procTicks returns the CPU time of process pid in clock ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcTicks(string(b))
}

// rest is what the machine did between two snapshots besides the nodes: the
// share of all its CPUs each of the snapshots' other processes took, what
// was left for other programs, and the share spent in softirq. ok is false
// without the machine's counters.
func rest(a, b *snapshot) (procs map[string]float64, others, softirq float64, ok bool) {
	if a == nil || b == nil {
		return nil, 0, 0, false
	}
	all, softirq, ok := busy(a.Machine, b.Machine)
	if !ok || b.Machine.CPUs == 0 {
		return nil, 0, 0, false
	}
	nodes, _ := nodesCPU(a, b)
	others = all - nodes/float64(b.Machine.CPUs)
	total := float64(b.Machine.Total - a.Machine.Total)
	procs = map[string]float64{}
	for name, tb := range b.Procs {
		if ta, ok := a.Procs[name]; ok && tb >= ta {
			procs[name] = float64(tb-ta) / total
			others -= procs[name]
		}
	}
	return procs, max(0, others), softirq, true
}

// runOthers prints, as a whole percentage, the share of the machine that
// other programs took between two snapshots, for the script to judge a
// measurement by; -1 where it cannot tell.
func runOthers(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale others", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := fs.String("a", "", "first snapshot")
	b := fs.String("b", "", "second snapshot")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *a == "" || *b == "" {
		return errors.New("others: -a and -b are required")
	}
	var sa, sb snapshot
	if err := readJSON(*a, &sa); err != nil {
		return err
	}
	if err := readJSON(*b, &sb); err != nil {
		return err
	}
	_, others, _, ok := rest(&sa, &sb)
	if !ok {
		fmt.Fprintln(stdout, -1)
		return nil
	}
	fmt.Fprintf(stdout, "%.0f\n", others*100)
	return nil
}

// readMachine reads the machine's CPU and UDP counters; either is nil
// where it cannot be read (not Linux).
func readMachine() (*machineCPU, *udpCounters) {
	var m *machineCPU
	var u *udpCounters
	if f, err := os.Open("/proc/stat"); err == nil {
		c, err := parseProcStat(f)
		f.Close()
		if err == nil {
			c.CPUs = runtime.NumCPU()
			m = &c
		}
	}
	if f, err := os.Open("/proc/net/snmp"); err == nil {
		c, err := parseSNMP(f)
		f.Close()
		if err == nil {
			u = &c
		}
	}
	return m, u
}

// runQuiet waits, up to -wait, until the machine is less busy than -max
// percent over one second: before a measurement, for other programs to
// leave the CPUs. It says how busy the machine was, and never fails for a
// busy machine.
func runQuiet(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale quiet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxBusy := fs.Float64("max", 15, "percent of the machine's CPUs that may be busy")
	wait := fs.Duration("wait", time.Minute, "how long to wait at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	deadline := time.Now().Add(*wait)
	a, _ := readMachine()
	if a == nil {
		return nil // no /proc/stat: nothing to wait on
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		b, _ := readMachine()
		share, _, ok := busy(a, b)
		a = b
		if !ok {
			continue
		}
		if share*100 <= *maxBusy {
			fmt.Fprintf(stderr, "machine %.0f%% busy\n", share*100)
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "machine still %.0f%% busy after %s; going on\n", share*100, *wait)
			return nil
		}
	}
}
