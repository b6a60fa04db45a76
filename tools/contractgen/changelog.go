package main

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// changeEntry is one bullet of event-contracts/CHANGELOG.md, with the
// release heading and section it is under.
type changeEntry struct {
	// Release is the "## " heading: "2026-12-01 — declared producers".
	Release string
	// Section is the "### " heading: "Added", "Changed" …
	Section string
	// Text is the bullet, continuation and nested lines included, as
	// written (without its trailing newline).
	Text string
}

// parseChangelog splits a Keep a Changelog file into its bullets. A bullet
// starts with "- " at the start of a line and runs until the next line that
// is neither indented nor empty-then-indented.
func parseChangelog(text string) ([]changeEntry, error) {
	var entries []changeEntry
	var release, section string
	var cur []string
	flush := func() {
		if cur != nil {
			entries = append(entries, changeEntry{Release: release, Section: section, Text: strings.TrimRight(strings.Join(cur, "\n"), "\n ")})
			cur = nil
		}
	}
	for i, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			flush()
			release, section = strings.TrimPrefix(line, "## "), ""
		case strings.HasPrefix(line, "### "):
			flush()
			section = strings.TrimPrefix(line, "### ")
		case strings.HasPrefix(line, "- "):
			flush()
			if release == "" {
				return nil, fmt.Errorf("CHANGELOG.md line %d: an entry before any release heading (## <date> — <title>)", i+1)
			}
			cur = []string{line}
		case cur != nil && (strings.HasPrefix(line, " ") || line == ""):
			cur = append(cur, line)
		default:
			flush()
		}
	}
	flush()
	return entries, nil
}

// mentions reports whether e names the event's version as the changelog's
// rule writes it: "`<name>.v<N>`". A mention of the name alone
// ("`order.created`") is not counted: it is often about another event.
func (e changeEntry) mentions(name string, version uint32) bool {
	return strings.Contains(e.Text, fmt.Sprintf("`%s.v%d`", name, version))
}

var mdLink = regexp.MustCompile(`\]\(([^)#][^)]*)\)`)

// rebase rewrites the relative links of markdown written in dir (relative
// to the repository root) so that they work from page's folder, toDir.
func rebase(markdown, dir, toDir string) string {
	up := strings.Repeat("../", strings.Count(path.Clean(toDir), "/")+1)
	return mdLink.ReplaceAllStringFunc(markdown, func(m string) string {
		target := mdLink.FindStringSubmatch(m)[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "/") || strings.HasPrefix(target, "mailto:") {
			return m
		}
		return "](" + up + path.Clean(path.Join(dir, target)) + ")"
	})
}
