package build

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// SyntaxError is a Dockerfile that does not parse: where, and what is
// wrong.
type SyntaxError struct {
	File string
	Line int    // 1-based; 0 if unknown
	Text string // the line as written
	Msg  string
	Hint string
}

func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Text != "" {
		fmt.Fprintf(&b, "\n  %d | %s", e.Line, e.Text)
	}
	if e.Hint != "" {
		b.WriteString("\n  hint: " + e.Hint)
	}
	return b.String()
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	escape   rune
}

// parse reads a Dockerfile with BuildKit's parser, and turns its errors
// into SyntaxErrors naming the line.
func parse(name string, data []byte) (*dockerfile, error) {
	lines := strings.Split(string(data), "\n")
	wrap := func(err error, line int) error {
		se := &SyntaxError{File: name, Line: line, Msg: err.Error()}
		if line > 0 && line <= len(lines) {
			se.Text = strings.TrimRight(lines[line-1], "\r")
		}
		var ui *instructions.UnknownInstructionError
		if errors.As(err, &ui) {
			se.Msg = "unknown instruction: " + ui.Instruction
			se.Hint = hintUnknown(ui.Instruction, strings.TrimSpace(se.Text))
		}
		return se
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, wrap(err, errLine(err))
	}
	for _, n := range res.AST.Children {
		if _, err := instructions.ParseInstruction(n); err != nil {
			return nil, wrap(unwrapLocation(err), n.StartLine)
		}
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, wrap(unwrapLocation(err), errLine(err))
	}
	if len(stages) == 0 {
		return nil, &SyntaxError{File: name, Msg: "file with no instructions", Hint: "a Dockerfile starts with FROM"}
	}
	return &dockerfile{stages: stages, metaArgs: metaArgs, escape: res.EscapeToken}, nil
}

// hintUnknown says what an unknown instruction likely meant: an
// instruction glued to its arguments (CMD["echo"]) or a misspelling.
func hintUnknown(word, line string) string {
	up := strings.ToUpper(word)
	if !strings.HasPrefix(strings.ToUpper(line), up) {
		line = word
	}
	for _, k := range knownInstructions {
		if strings.HasPrefix(up, k) && len(up) > len(k) && !isLetter(up[len(k)]) {
			return fmt.Sprintf("%s needs a space before its arguments: write %s", k, line[:len(k)]+" "+line[len(k):])
		}
	}
	return "instructions are " + strings.Join(knownInstructions, ", ")
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

var knownInstructions = []string{
	"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
	"MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}

func errLine(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return le.Locations[0][0].Start.Line
	}
	return 0
}

// unwrapLocation drops BuildKit's location wrapper (we print our own).
func unwrapLocation(err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) && le.Unwrap() != nil {
		return le.Unwrap()
	}
	return err
}
