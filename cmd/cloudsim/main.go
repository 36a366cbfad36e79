// Command cloudsim serves podlb's cloud emulators (AWS ELBv2 + EC2 and GCP
// Compute) as one standalone process, each cloud on its own loopback address.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
)

// emulator is one cloud this process can serve. Each cloud's file registers
// itself from init: it adds its flags and, when enabled, starts its server.
type emulator struct {
	name string
	// addFlags registers the cloud's flags and returns the function that
	// starts it; start returns a human-readable description of where it
	// listens and a stop function.
	addFlags func(fs *flag.FlagSet) (start func(ctx context.Context) (where string, stop func(), err error))
}

var emulators []emulator

func main() {
	fs := flag.NewFlagSet("cloudsim", flag.ExitOnError)
	enabled := map[string]*bool{}
	starts := map[string]func(ctx context.Context) (string, func(), error){}
	for _, e := range emulators {
		enabled[e.name] = fs.Bool(e.name, true, "serve the "+e.name+" emulator")
		starts[e.name] = e.addFlags(fs)
	}
	_ = fs.Parse(os.Args[1:])

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	var stops []func()
	for _, e := range emulators {
		if !*enabled[e.name] {
			continue
		}
		where, stop, err := starts[e.name](ctx)
		if err != nil {
			log.Fatalf("cloudsim: starting %s: %v", e.name, err)
		}
		stops = append(stops, stop)
		fmt.Printf("%s: %s\n", e.name, where)
	}
	if len(stops) == 0 {
		log.Fatal("cloudsim: no emulator enabled")
	}
	<-ctx.Done()
	for _, stop := range stops {
		stop()
	}
}
