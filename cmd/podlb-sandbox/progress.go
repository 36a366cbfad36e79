package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// display shows the rollouts as they happen: on a terminal a table redrawn
// in place, otherwise a few plain lines every plainEvery.
type display struct {
	w      io.Writer
	clouds []string
	tty    bool
	// drawn is how many lines the last table took, to move back over them.
	drawn     int
	lastPlain time.Duration
	// quiet lists apps whose last plain line said they were done.
	quiet map[string]bool
}

const plainEvery = 2 * time.Second

func newDisplay(f *os.File, clouds []string) *display {
	d := &display{w: f, clouds: clouds, lastPlain: -plainEvery, quiet: map[string]bool{}}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb" {
		d.tty = true
	}
	return d
}

func (d *display) update(elapsed time.Duration, apps []*app, views map[string]appView) {
	if d.tty {
		d.redraw(d.table(elapsed, apps, views))
		return
	}
	if elapsed-d.lastPlain < plainEvery {
		return
	}
	d.lastPlain = elapsed
	for _, a := range apps {
		if d.quiet[a.name] {
			continue
		}
		fmt.Fprintln(d.w, d.line(elapsed, a, views[a.name]))
		d.quiet[a.name] = a.state() == "done"
	}
}

// finish leaves the last table on screen.
func (d *display) finish() {
	if d.tty {
		d.drawn = 0
	}
}

func (d *display) redraw(table string) {
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn) // cursor up to the table's first line
	}
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	for _, l := range lines {
		b.WriteString("\x1b[2K" + l + "\n") // clear the old line, then write
	}
	d.drawn = len(lines)
	io.WriteString(d.w, b.String())
}

// table stays within 80 columns: a wrapped line would break the redraw,
// which moves the cursor up by lines written, not lines displayed.
func (d *display) table(elapsed time.Duration, apps []*app, views map[string]appView) string {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "\nrolling update, %.1fs\n", elapsed.Seconds())
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tCLOUD\tPODS old/new\tGATE\tLB reg/healthy\tOK\tFAILED\tSTATE")
	for _, a := range apps {
		v := views[a.name]
		pods := fmt.Sprintf("%d/%d", v.Old, v.New)
		if v.Terminating > 0 {
			pods += fmt.Sprintf(" (-%d)", v.Terminating)
		}
		for _, c := range d.clouds {
			g := v.groups[c]
			res := a.lbs[c].result()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\n", a.name, c, pods,
				gateCell(a, v), g.Registered, g.Healthy, res.OK, res.Failed, a.state())
		}
	}
	tw.Flush()
	fmt.Fprintln(&buf, "(-N: pods terminating; GATE: pods with podlb.io/load-balancer-ready True)")
	return buf.String()
}

func (d *display) line(elapsed time.Duration, a *app, v appView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  %-7s %-14s pods old %d new %d terminating %d, gate %s", elapsed.Seconds(), a.name, a.state(), v.Old, v.New, v.Terminating, gateCell(a, v))
	for _, c := range d.clouds {
		g := v.groups[c]
		res := a.lbs[c].result()
		fmt.Fprintf(&b, " | %s: %d registered, %d healthy, %d ok, %d failed", c, g.Registered, g.Healthy, res.OK, res.Failed)
	}
	return b.String()
}

func gateCell(a *app, v appView) string {
	if !a.gated {
		return "-"
	}
	return fmt.Sprintf("%d/%d", v.GateTrue, v.Live)
}

// state is where the app's rollout stands.
func (a *app) state() string {
	switch {
	case a.rolledOut.IsZero():
		return "rolling"
	case a.settled.IsZero():
		return "LB catching up"
	default:
		return "done"
	}
}
