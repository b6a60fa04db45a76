package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// repoRoot is the repository's top directory: tests run in cmd/shopbus.
const repoRoot = "../.."

// dockerfile is what TestCompose reads of the Dockerfile.
type dockerfile struct {
	// build is the shell command of the RUN line that runs go build;
	// output is its -o path.
	build, output string
	// final is the base image of the last stage, entrypoint its
	// ENTRYPOINT's program, user its USER.
	final, entrypoint, user string
	copied                  []string // "src dst" of the COPY --from=build lines
}

func readDockerfile() (*dockerfile, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	var d dockerfile
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			d.final, _, _ = strings.Cut(rest, " ")
		case "RUN":
			if strings.Contains(rest, "go build") {
				d.build = rest
				if m := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(rest); m != nil {
					d.output = m[1]
				}
			}
		case "COPY":
			if src, ok := strings.CutPrefix(rest, "--from=build "); ok {
				d.copied = append(d.copied, src)
			}
		case "ENTRYPOINT":
			d.entrypoint = strings.Trim(strings.Split(strings.Trim(rest, "[]"), ",")[0], `" `)
		case "USER":
			d.user = rest
		}
	}
	if d.build == "" || d.output == "" {
		return nil, fmt.Errorf("dockerfile: no RUN go build -o … line")
	}
	return &d, nil
}

// dockerBuild builds shopbus to out with the Dockerfile's own build
// command (a shell command, as RUN runs it), from the repository's top.
func dockerBuild(out string) (string, error) {
	d, err := readDockerfile()
	if err != nil {
		return "", err
	}
	command := strings.Replace(d.build, " -o "+d.output+" ", " -o '"+out+"' ", 1)
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", command, err, b)
	}
	return out, nil
}
