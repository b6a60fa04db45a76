package event

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The catalog is every event message linked into the binary: importing
	// the generated packages here registers them. A contract added under
	// event-contracts/ is added here too (TestEveryContractIsInCatalog).
	_ "github.com/shopbus/shopbus/gen/go/chat/message/v1"
	_ "github.com/shopbus/shopbus/gen/go/ecommerce/inventory/v1"
	_ "github.com/shopbus/shopbus/gen/go/ecommerce/order/v1"
	_ "github.com/shopbus/shopbus/gen/go/ecommerce/order/v2"
	_ "github.com/shopbus/shopbus/gen/go/iot/telemetry/v1"
	_ "github.com/shopbus/shopbus/gen/go/ml/fraud/v1"
	_ "github.com/shopbus/shopbus/gen/go/social/post/v1"
)

type key struct {
	name    string
	version uint32
}

type catalog struct {
	specs []Spec
	byKey map[key]Spec
	// bySubject holds every Spec by its type subject (Spec.Subject).
	bySubject map[string]Spec
	errors    []error
}

var loadCatalog = sync.OnceValue(func() *catalog {
	c := &catalog{byKey: map[key]Spec{}, bySubject: map[string]Spec{}}
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if _, ok := declaredOptions(mt.Descriptor()); !ok {
			return true
		}
		spec, err := specOfType(mt)
		if err != nil {
			c.errors = append(c.errors, err)
			return true
		}
		k := key{spec.Name, spec.Version}
		if other, dup := c.byKey[k]; dup {
			c.errors = append(c.errors, fmt.Errorf("%w: %s and %s both declare %s",
				ErrNotEvent, other.Message.Descriptor().FullName(), mt.Descriptor().FullName(), spec))
			return true
		}
		c.byKey[k] = spec
		c.bySubject[spec.Subject()] = spec
		c.specs = append(c.specs, spec)
		return true
	})
	slices.SortFunc(c.specs, func(a, b Spec) int {
		return cmp.Or(cmp.Compare(a.Domain, b.Domain), cmp.Compare(a.Context, b.Context),
			cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	return c
})

// Catalog returns every event linked into the binary, sorted by domain,
// context, name and version.
func Catalog() []Spec {
	return slices.Clone(loadCatalog().specs)
}

// CatalogErrors returns the events whose declarations break the naming rule
// or collide with another event. An empty result means the catalog is sound.
func CatalogErrors() []error {
	return slices.Clone(loadCatalog().errors)
}

// LookupSubject returns the Spec of the event whose type subject
// (Spec.Subject, "<domain>.<entity>.<action>.v<N>") is subject.
func LookupSubject(subject string) (Spec, error) {
	spec, ok := loadCatalog().bySubject[subject]
	if !ok {
		return Spec{}, fmt.Errorf("%w: no event has the type subject %q", ErrUnknownType, subject)
	}
	return spec, nil
}

// Lookup returns the Spec of the event with the given type and version.
func Lookup(name string, version uint32) (Spec, error) {
	spec, ok := loadCatalog().byKey[key{name, version}]
	if !ok {
		return Spec{}, fmt.Errorf("%w: %q version %d", ErrUnknownType, name, version)
	}
	return spec, nil
}
