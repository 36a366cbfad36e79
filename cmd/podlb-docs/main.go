// Command podlb-docs rewrites the generated reference sections of the
// guide (flags, annotation fields) from the code: `make docs`.
package main

import (
	"fmt"
	"os"

	"github.com/podlb/podlb/internal/docgen"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "podlb-docs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: podlb-docs GUIDE.md")
	}
	path := args[0]
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	updated, err := docgen.Update(string(old))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if updated == string(old) {
		return nil
	}
	return os.WriteFile(path, []byte(updated), 0o644)
}
