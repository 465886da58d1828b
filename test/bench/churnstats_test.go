//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// churnServer is a server under churn and its Prometheus metrics URL.
type churnServer struct {
	*server
	metrics string
}

// usage is what one server used over a measured window.
type usage struct {
	cpu          time.Duration // CPU time (user + system)
	cores        float64       // CPU time ÷ wall time
	rss, rssMax  int64         // RSS at the end, highest sampled during
	peak         int64         // VmHWM: the highest since the process started
	gcs          int           // GC cycles in the window
	gcPause      time.Duration
	gcMax        time.Duration // the longest of the runtime's recent pauses
	builds       int           // hdns only: snapshots built in the window
	buildSeconds float64
	scraped      bool // the metrics answered, before and after
}

// meter measures servers from startMeter to stop: CPU from /proc, RSS
// sampled every 250 ms, GC and zone build figures from each one's
// /metrics.
type meter struct {
	servers []*churnServer
	begin   time.Time
	cpu     []time.Duration
	metrics []map[string]float64
	rssMax  []int64
	mu      sync.Mutex
	done    chan struct{}
	wg      sync.WaitGroup
}

func startMeter(servers []*churnServer) *meter {
	m := &meter{servers: servers, begin: time.Now(), rssMax: make([]int64, len(servers)), done: make(chan struct{})}
	for _, s := range servers {
		c, _ := s.cpu()
		m.cpu = append(m.cpu, c)
		v, _ := scrape(s.metrics)
		m.metrics = append(m.metrics, v)
	}
	m.wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sampleRSS()
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
		}
	})
	return m
}

func (m *meter) sampleRSS() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, s := range m.servers {
		if cur, _, err := s.rss(); err == nil {
			m.rssMax[i] = max(m.rssMax[i], cur)
		}
	}
}

// stop ends the window and returns each server's usage by name.
func (m *meter) stop() map[string]usage {
	close(m.done)
	m.wg.Wait()
	m.sampleRSS()
	wall := time.Since(m.begin)
	out := map[string]usage{}
	for i, s := range m.servers {
		var u usage
		if c, err := s.cpu(); err == nil {
			u.cpu = c - m.cpu[i]
			u.cores = float64(u.cpu) / float64(wall)
		}
		u.rss, u.peak, _ = s.rss()
		u.rssMax = m.rssMax[i]
		after, err := scrape(s.metrics)
		if err == nil && m.metrics[i] != nil {
			u.scraped = true
			delta := func(k string) float64 { return after[k] - m.metrics[i][k] }
			u.gcs = int(delta("go_gc_duration_seconds_count"))
			u.gcPause = seconds(delta("go_gc_duration_seconds_sum"))
			u.gcMax = seconds(after[`go_gc_duration_seconds{quantile="1"}`])
			for _, kind := range []string{"full", "incremental"} {
				u.builds += int(delta(`hdns_zone_build_duration_seconds_count{kind="` + kind + `"}`))
				u.buildSeconds += delta(`hdns_zone_build_duration_seconds_sum{kind="` + kind + `"}`)
			}
		}
		out[s.name] = u
	}
	return out
}

func seconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

// scrape reads a Prometheus text exposition: the value of each sample by
// its name and labels as written (`name{label="v"}`).
func scrape(url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s, %w", url, resp.Status, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// bounded formats a propagation time in ms, as a lower bound when it is
// a missed change's probeTimeout.
func bounded(d time.Duration) string {
	if d >= probeTimeout {
		return fmt.Sprintf("≥ %.0f", ms(probeTimeout))
	}
	return fmt.Sprintf("%.1f", ms(d))
}

// churnReport renders TestChurn's tables.
func churnReport(t testing.TB, cfg churnConfig, scales []churnScale, runs []churnRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Propagation under churn\n\n")
	fmt.Fprintf(&b, "%s. hdns and CoreDNS (kubernetes plugin, no cache, prometheus plugin for its Go metrics) started fresh on the same control plane once each scale's objects exist, unpinned. Headless Services without selectors whose sizes cycle through %v, EndpointSlices of ≤ %d endpoints written directly. At each rate for %v a writer flips one endpoint's Ready and Serving conditions per change (an unconditional EndpointSlice update; %d writes in flight at most, a change that finds its worker's queue full is dropped); at most %d changes per second, evenly spread over the window, are timed from the start of the write until each server, polled every %v over UDP for the endpoint's own name, answers it (ready) or not (unready); a change a server missed (no changed answer within %[8]v) counts as %[8]v in its percentiles, shown as ≥; \"after the write\" is that time less the write's own (the API server's response), each server's share (negative when its watch event came before the response). CPU from /proc/PID/stat over the window; RSS sampled every 250 ms, peak = VmHWM since start; GC figures from each server's go_gc_duration_seconds (max: the longest of the runtime's latest 256 pauses).\n\n",
		machine(), churnSizes, sliceSize, cfg.duration, churnWorkers, cfg.probes, propPoll, probeTimeout)
	b.WriteString("| endpoints | Services (of 1,000) | namespaces | slices | created in (s) | hdns ready (s) | CoreDNS ready (s) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range scales {
		fmt.Fprintf(&b, "| %d | %d (%d) | %d | %d | %.1f | %.1f | %.1f |\n", s.endpoints, s.services, s.large, s.namespaces, s.slices,
			s.created.Seconds(), s.ready["hdns"].Seconds(), s.ready["CoreDNS"].Seconds())
	}
	b.WriteString("\n| endpoints | changes/s asked | done/s | dropped | API write p50 / p99 (ms) | server | timed | propagation p50 / p99 / max (ms) | after the write p50 / p99 (ms) | missed (> 10 s) | CPU (cores) | RSS end / max (MiB) | peak (MiB) | GCs | GC pause mean / max (ms) | zone builds, mean (ms) |\n")
	b.WriteString("|---:|---:|---:|---:|---|---|---:|---|---|---:|---:|---|---:|---:|---|---|\n")
	for _, r := range runs {
		for _, name := range []string{"hdns", "CoreDNS"} {
			u, d, a := r.usage[name], r.lat[name], r.after[name]
			gc, builds := "—", ""
			if u.scraped {
				gc = fmt.Sprintf("%.2f / %.2f", ms(u.gcPause)/float64(max(1, u.gcs)), ms(u.gcMax))
			}
			if name == "hdns" && u.scraped {
				builds = fmt.Sprintf("%d, %.1f", u.builds, 1000*u.buildSeconds/float64(max(1, u.builds)))
			}
			fmt.Fprintf(&b, "| %d | %d | %.1f | %d | %.1f / %.1f | %s | %d | %s / %s / %s | %.1f / %.1f | %d | %.3f | %.1f / %.1f | %.1f | %d | %s | %s |\n",
				r.endpoints, r.rate, float64(r.done)/r.elapsed.Seconds(), r.dropped, ms(percentile(r.writes, 50)), ms(percentile(r.writes, 99)),
				name, len(d), bounded(percentile(d, 50)), bounded(percentile(d, 99)), bounded(percentile(d, 100)), ms(percentile(a, 50)), ms(percentile(a, 99)), r.missed[name],
				u.cores, mib(u.rss), mib(u.rssMax), mib(u.peak), u.gcs, gc, builds)
		}
	}
	fmt.Fprintf(&b, "\nTargets at 200k endpoints and 100 changes/s: hdns p99 < 100 ms and ≤ CoreDNS's, hdns CPU ≤ 0.2 core. Versions: %s.\n", versions(t, false))
	return b.String()
}
