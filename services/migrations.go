// Package services holds the shopbus services, a package each
// (services/<name>), and what the platform reads of them before it runs
// one: their migrations, services/<name>/migrations/*.sql, embedded here
// once for every service. Services never import it, nor each other.
package services

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed */migrations/*.sql
var migrations embed.FS

// Migrations returns the tables of the service name
// (services/<name>/migrations); messaging.Migrations adds the outbox and
// processed_events. It holds nothing for a name no service has, and panics
// on a name that is no path element: a service's name is lower-case
// letters.
func Migrations(name string) fs.FS {
	sub, err := fs.Sub(migrations, name+"/migrations")
	if err != nil {
		panic(fmt.Sprintf("services: migrations of %q: %v", name, err))
	}
	return sub
}

// Names returns the names of the services that have migrations, sorted.
func Names() []string {
	entries, err := migrations.ReadDir(".")
	if err != nil {
		panic(fmt.Sprintf("services: %v", err))
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
