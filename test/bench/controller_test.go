package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/internal/procstat"
)

// The controller runs as its own process, the production binary, so its
// memory and CPU are its own and nothing of the bench's heap or goroutines
// leaks into them. internal/childproc makes it die with the bench.

type controllerProcess struct {
	*childproc.Process
	metricsURL string
}

func controllerBinary() (string, error) {
	if *flagBinary != "" {
		return *flagBinary, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "bin", "podlb-controller")
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("bin/podlb-controller not found: run `make build` or pass -bench.controller")
		}
	}
}

// startController runs bin/podlb-controller with args plus a metrics
// address of its own; its log goes to logDir/podlb-controller.log.
func startController(logDir string, args, env []string) (*controllerProcess, error) {
	bin, err := controllerBinary()
	if err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args = append([]string{"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=0"}, args...)
	proc, err := childproc.Start("podlb-controller", bin, logDir, env, args...)
	if err != nil {
		return nil, err
	}
	p := &controllerProcess{Process: proc, metricsURL: "http://" + metricsAddr + "/metrics"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.scrape(); err == nil {
			return p, nil
		}
		select {
		case <-p.Exited():
			return nil, p.Failure("exited during start-up")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			err := p.Failure("metrics not served within 30s")
			p.stop()
			return nil, err
		}
	}
}

// saveRaw writes what the controller's pprof endpoint answers to query
// to path, as it comes.
func (p *controllerProcess) saveRaw(ctx context.Context, query, path string) (string, error) {
	url := strings.TrimSuffix(p.metricsURL, "/metrics") + "/debug/pprof/" + query
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("profile %s: HTTP %d", query, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// saveProfile writes one of the controller's runtime profiles (it runs
// with --profiling), e.g. "heap?gc=1" or "profile?seconds=60", to path
// and returns pprof's top entries by sampleIndex.
func (p *controllerProcess) saveProfile(ctx context.Context, query, sampleIndex, path string) (string, error) {
	if _, err := p.saveRaw(ctx, query, path); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", "-sample_index="+sampleIndex, path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	return string(out), nil
}

// stop gives the controller 10 s to shut down cleanly.
func (p *controllerProcess) stop() {
	if p != nil {
		p.Stop(10 * time.Second)
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process figures from /proc.

// rssBytes is VmRSS of /proc/<pid>/status.
func rssBytes(pid int) (int64, error) { return procStatusBytes(pid, "VmRSS") }

// procStatusBytes reads a field of /proc/<pid>/status given in kB, such as
// RssAnon, in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	return procstat.Bytes(strconv.Itoa(pid), field)
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports
// outside of alpha/ia64.
const clockTicks = 100

// cpuTime is utime+stime of /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// Metrics from the Prometheus text format: only plain "name{labels} value"
// lines matter here, so a few lines of parsing replace a dependency.

type sample struct {
	labels map[string]string
	value  float64
}

type metricSet map[string][]sample

func (p *controllerProcess) scrape() (metricSet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	out := metricSet{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest := line, "", ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, labels, rest = line[:i], line[i+1:j], line[j+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] = append(out[name], sample{labels: parseLabels(labels), value: v})
	}
	return out, sc.Err()
}

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		key := strings.TrimLeft(s[:eq], ", ")
		// Values are quoted with \" and \\ escapes.
		var b strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		out[key] = b.String()
		s = s[min(i+1, len(s)):]
	}
	return out
}

// sum adds the samples of name whose labels include want.
func (m metricSet) sum(name string, want map[string]string) float64 {
	var total float64
	for _, s := range m[name] {
		if matches(s.labels, want) {
			total += s.value
		}
	}
	return total
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// buckets returns the cumulative histogram buckets of name (le -> count)
// for the series matching want, summed.
func (m metricSet) buckets(name string, want map[string]string) map[float64]float64 {
	out := map[float64]float64{}
	for _, s := range m[name+"_bucket"] {
		if !matches(s.labels, want) {
			continue
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		out[le] += s.value
	}
	return out
}

// histogramQuantile estimates quantile q of the observations between two
// scrapes (after minus before) as Prometheus does: linear within the
// bucket that holds the rank.
func histogramQuantile(q float64, before, after map[float64]float64) (float64, float64) {
	type bucket struct{ le, count float64 }
	var bs []bucket
	for le, c := range after {
		bs = append(bs, bucket{le, c - before[le]})
	}
	if len(bs) == 0 {
		return 0, 0
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0, 0
	}
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if b.le > 1e300 { // +Inf: the answer is at least the last finite bound
				return prevLe, total
			}
			if b.count == prevCount {
				return b.le, total
			}
			return prevLe + (b.le-prevLe)*(rank-prevCount)/(b.count-prevCount), total
		}
		prevLe, prevCount = b.le, b.count
	}
	return prevLe, total
}
