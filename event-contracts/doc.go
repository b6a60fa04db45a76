// Package contracts holds shopbus's event contracts: one folder per bounded
// context (<domain>/<context>/) with its proto packages (v1/, v2/ ...), the
// JSON Schema of each event (<entity>.<action>.v<N>.json), valid and invalid
// examples, and a README naming owner, producers and consumers. Its tests
// check the naming rule, that JSON Schema and protovalidate agree on every
// example, and that the breaking-change gate bites. docs/governance.md says
// how contracts change.
package contracts
