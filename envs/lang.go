// lang.go implements Sparrow's tiny programming language, the sandbox of the code family:
//
//	program  := { stmt sep }            sep: a newline or ';' (blank statements are allowed)
//	stmt     := NAME '=' expr
//	          | 'print' expr           prints the value and a newline
//	          | 'while' expr block
//	          | 'if' expr block [ 'else' ( block | if-stmt ) ]
//	block    := '{' program '}'
//	expr     := sum [ ('<' | '<=' | '>' | '>=' | '==' | '!=') sum ]    a comparison is 1 or 0
//	sum      := term { ('+' | '-') term }
//	term     := unary { ('*' | '/' | '%') unary }                     / and % truncate toward zero
//	unary    := '-' unary | INT | NAME | '(' expr ')'
//
// Values are int64; overflow, division by zero and reading an unset variable are runtime errors. '#'
// starts a comment to the end of the line. Names are [a-z_][a-z0-9_]* except the keywords print, while,
// if, else. A condition is true when it is not 0.
//
// The interpreter never panics and always stops, whatever the source: Limits bounds the source size, the
// nesting depth (of parentheses, unary minus, operator chains and blocks, checked while parsing so that no
// recursion goes deeper), the steps (one per statement executed, loop condition tested and expression node
// evaluated), the number of variables and the bytes printed. Errors wrap ErrSyntax, ErrRuntime,
// ErrStepLimit, ErrDepthLimit, ErrMemoryLimit or ErrOutputLimit and name the line.
//
// Program.Format prints the canonical source (two-space indents, spaces around binary operators, minimal
// parentheses); Run with a trace writes one line per statement executed with the variables' values
// substituted: "y=3*2+1=7", "print 7", "while 3>0: yes", "if 7>5: no".

package envs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Errors of the interpreter, usable with errors.Is.
var (
	ErrSyntax      = errors.New("syntax error")
	ErrRuntime     = errors.New("runtime error")
	ErrStepLimit   = errors.New("step limit exceeded")
	ErrDepthLimit  = errors.New("nesting depth limit exceeded")
	ErrMemoryLimit = errors.New("memory limit exceeded")
	ErrOutputLimit = errors.New("output limit exceeded")
)

// Limits bounds a program's source and execution. Zero fields take the defaults of DefaultLimits.
type Limits struct {
	MaxSource int // bytes of source (default 16384)
	MaxDepth  int // nesting depth of expressions and blocks (default 64)
	MaxSteps  int // statements + loop tests + expression nodes (default 100000)
	MaxVars   int // distinct variables (default 64)
	MaxOutput int // bytes printed (default 4096)
}

// DefaultLimits returns the defaults.
func DefaultLimits() Limits {
	return Limits{MaxSource: 16384, MaxDepth: 64, MaxSteps: 100000, MaxVars: 64, MaxOutput: 4096}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSource <= 0 {
		l.MaxSource = d.MaxSource
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = d.MaxSteps
	}
	if l.MaxVars <= 0 {
		l.MaxVars = d.MaxVars
	}
	if l.MaxOutput <= 0 {
		l.MaxOutput = d.MaxOutput
	}
	return l
}

// ---- lexer ----

type tokKind int

const (
	tEOF tokKind = iota
	tNewline
	tInt
	tName
	tKeyword
	tOp
)

type token struct {
	kind tokKind
	text string
	val  int64
	line int
}

func isNameStart(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') }
func isNameChar(c byte) bool  { return isNameStart(c) || (c >= '0' && c <= '9') }

var keywords = map[string]bool{"print": true, "while": true, "if": true, "else": true}

func lex(src string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			toks = append(toks, token{kind: tNewline, text: "\n", line: line})
			line++
			i++
		case c == ';':
			toks = append(toks, token{kind: tNewline, text: ";", line: line})
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			v, err := strconv.ParseInt(src[i:j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w: integer %.20s is out of range", line, ErrSyntax, src[i:j])
			}
			toks = append(toks, token{kind: tInt, text: src[i:j], val: v, line: line})
			i = j
		case isNameStart(c):
			j := i
			for j < len(src) && isNameChar(src[j]) {
				j++
			}
			k := tName
			if keywords[src[i:j]] {
				k = tKeyword
			}
			toks = append(toks, token{kind: k, text: src[i:j], line: line})
			i = j
		default:
			op := ""
			if i+1 < len(src) {
				switch two := src[i : i+2]; two {
				case "<=", ">=", "==", "!=":
					op = two
				}
			}
			if op == "" && strings.IndexByte("+-*/%()<>={}", c) >= 0 {
				op = src[i : i+1]
			}
			if op == "" {
				return nil, fmt.Errorf("line %d: %w: unexpected character %q", line, ErrSyntax, c)
			}
			toks = append(toks, token{kind: tOp, text: op, line: line})
			i += len(op)
		}
	}
	return append(toks, token{kind: tEOF, line: line}), nil
}

// ---- syntax tree ----

type exprKind int

const (
	eInt exprKind = iota
	eVar
	eNeg
	eBin
)

type expr struct {
	kind  exprKind
	val   int64
	name  string
	op    string
	l, r  *expr
	depth int
}

type stmtKind int

const (
	sAssign stmtKind = iota
	sPrint
	sWhile
	sIf
)

type stmt struct {
	kind      stmtKind
	name      string
	e         *expr
	body, els []*stmt
	elseIf    bool // els is the single if statement of an "else if"
	line      int
}

// Program is a parsed program.
type Program struct {
	stmts []*stmt
}

// ---- parser ----

type parser struct {
	toks  []token
	i     int
	lim   Limits
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errf(t token, format string, args ...any) error {
	return fmt.Errorf("line %d: %w: %s", t.line, ErrSyntax, fmt.Sprintf(format, args...))
}

func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > p.lim.MaxDepth {
		return fmt.Errorf("line %d: %w (%d)", t.line, ErrDepthLimit, p.lim.MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// Parse parses src under lim (only MaxSource and MaxDepth matter here).
func Parse(src string, lim Limits) (*Program, error) {
	lim = lim.withDefaults()
	if len(src) > lim.MaxSource {
		return nil, fmt.Errorf("%w: source of %d bytes is over the %d allowed", ErrMemoryLimit, len(src), lim.MaxSource)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, lim: lim}
	stmts, err := p.block(false)
	if err != nil {
		return nil, err
	}
	return &Program{stmts: stmts}, nil
}

// block parses statements up to '}' (inner) or EOF (top level).
func (p *parser) block(inner bool) ([]*stmt, error) {
	var out []*stmt
	for {
		t := p.peek()
		switch {
		case t.kind == tNewline:
			p.next()
			continue
		case t.kind == tEOF:
			if inner {
				return nil, p.errf(t, "missing }")
			}
			return out, nil
		case t.kind == tOp && t.text == "}":
			if !inner {
				return nil, p.errf(t, "unexpected }")
			}
			return out, nil
		}
		s, err := p.stmt()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		switch t := p.peek(); {
		case t.kind == tNewline:
			p.next()
		case t.kind == tEOF, t.kind == tOp && t.text == "}":
		default:
			return nil, p.errf(t, "unexpected %q after a statement", t.text)
		}
	}
}

func (p *parser) braces() ([]*stmt, error) {
	t := p.next()
	if t.kind != tOp || t.text != "{" {
		return nil, p.errf(t, "want {, got %q", t.text)
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer p.leave()
	body, err := p.block(true)
	if err != nil {
		return nil, err
	}
	p.next() // the '}'
	return body, nil
}

func (p *parser) stmt() (*stmt, error) {
	t := p.next()
	switch {
	case t.kind == tName:
		if eq := p.next(); eq.kind != tOp || eq.text != "=" {
			return nil, p.errf(eq, "want = after %s, got %q", t.text, eq.text)
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &stmt{kind: sAssign, name: t.text, e: e, line: t.line}, nil
	case t.kind == tKeyword && t.text == "print":
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &stmt{kind: sPrint, e: e, line: t.line}, nil
	case t.kind == tKeyword && (t.text == "while" || t.text == "if"):
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		body, err := p.braces()
		if err != nil {
			return nil, err
		}
		s := &stmt{kind: sWhile, e: e, body: body, line: t.line}
		if t.text == "if" {
			s.kind = sIf
			if n := p.peek(); n.kind == tKeyword && n.text == "else" {
				p.next()
				if n2 := p.peek(); n2.kind == tKeyword && n2.text == "if" {
					if err := p.enter(n2); err != nil {
						return nil, err
					}
					elif, err := p.stmt()
					p.leave()
					if err != nil {
						return nil, err
					}
					s.els, s.elseIf = []*stmt{elif}, true
				} else if s.els, err = p.braces(); err != nil {
					return nil, err
				}
			}
		}
		return s, nil
	default:
		return nil, p.errf(t, "unexpected %q at the start of a statement", t.text)
	}
}

func (p *parser) binary(t token, op string, l, r *expr) (*expr, error) {
	e := &expr{kind: eBin, op: op, l: l, r: r, depth: 1 + max(l.depth, r.depth)}
	if e.depth > p.lim.MaxDepth {
		return nil, fmt.Errorf("line %d: %w (%d)", t.line, ErrDepthLimit, p.lim.MaxDepth)
	}
	return e, nil
}

func (p *parser) expr() (*expr, error) {
	l, err := p.sum()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tOp {
		switch t.text {
		case "<", "<=", ">", ">=", "==", "!=":
			p.next()
			r, err := p.sum()
			if err != nil {
				return nil, err
			}
			return p.binary(t, t.text, l, r)
		}
	}
	return l, nil
}

func (p *parser) sum() (*expr, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || (t.text != "+" && t.text != "-") {
			return l, nil
		}
		p.next()
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		if l, err = p.binary(t, t.text, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) term() (*expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || (t.text != "*" && t.text != "/" && t.text != "%") {
			return l, nil
		}
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		if l, err = p.binary(t, t.text, l, r); err != nil {
			return nil, err
		}
	}
}

func (p *parser) unary() (*expr, error) {
	t := p.next()
	switch {
	case t.kind == tInt:
		return &expr{kind: eInt, val: t.val, depth: 1}, nil
	case t.kind == tName:
		return &expr{kind: eVar, name: t.text, depth: 1}, nil
	case t.kind == tOp && t.text == "-":
		if err := p.enter(t); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &expr{kind: eNeg, l: x, depth: x.depth + 1}, nil
	case t.kind == tOp && t.text == "(":
		if err := p.enter(t); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tOp || c.text != ")" {
			return nil, p.errf(c, "want ), got %q", c.text)
		}
		return x, nil
	default:
		text := t.text
		if t.kind == tEOF {
			text = "end of program"
		} else if t.kind == tNewline {
			text = "end of line"
		}
		return nil, p.errf(t, "want a number, a name, - or (, got %q", text)
	}
}

// ---- formatting ----

func prec(e *expr) int {
	switch {
	case e.kind != eBin:
		return 4
	case e.op == "*" || e.op == "/" || e.op == "%":
		return 3
	case e.op == "+" || e.op == "-":
		return 2
	default:
		return 1
	}
}

// exprString renders e with minimal parentheses; binary operators are surrounded by sep. value, when not
// nil, replaces each variable by its value (negative values in parentheses).
func exprString(sb *strings.Builder, e *expr, sep string, value func(string) (int64, bool)) {
	switch e.kind {
	case eInt:
		sb.WriteString(strconv.FormatInt(e.val, 10))
	case eVar:
		if value != nil {
			if v, ok := value(e.name); ok {
				if v < 0 {
					sb.WriteString("(" + strconv.FormatInt(v, 10) + ")")
				} else {
					sb.WriteString(strconv.FormatInt(v, 10))
				}
				return
			}
		}
		sb.WriteString(e.name)
	case eNeg:
		sb.WriteByte('-')
		paren := e.l.kind == eBin || e.l.kind == eNeg || (e.l.kind == eInt && e.l.val < 0)
		if paren {
			sb.WriteByte('(')
		}
		exprString(sb, e.l, sep, value)
		if paren {
			sb.WriteByte(')')
		}
	case eBin:
		p := prec(e)
		lp := prec(e.l) < p || (p == 1 && prec(e.l) == 1)
		rp := prec(e.r) <= p
		if lp {
			sb.WriteByte('(')
		}
		exprString(sb, e.l, sep, value)
		if lp {
			sb.WriteByte(')')
		}
		sb.WriteString(sep + e.op + sep)
		if rp {
			sb.WriteByte('(')
		}
		exprString(sb, e.r, sep, value)
		if rp {
			sb.WriteByte(')')
		}
	}
}

// Format prints the canonical source of the program.
func (p *Program) Format() string {
	var sb strings.Builder
	formatBlock(&sb, p.stmts, 0)
	return sb.String()
}

func formatBlock(sb *strings.Builder, stmts []*stmt, indent int) {
	for _, s := range stmts {
		sb.WriteString(strings.Repeat("  ", indent))
		formatStmt(sb, s, indent)
		sb.WriteByte('\n')
	}
}

func formatStmt(sb *strings.Builder, s *stmt, indent int) {
	switch s.kind {
	case sAssign:
		sb.WriteString(s.name + " = ")
		exprString(sb, s.e, " ", nil)
	case sPrint:
		sb.WriteString("print ")
		exprString(sb, s.e, " ", nil)
	case sWhile, sIf:
		if s.kind == sWhile {
			sb.WriteString("while ")
		} else {
			sb.WriteString("if ")
		}
		exprString(sb, s.e, " ", nil)
		sb.WriteString(" {\n")
		formatBlock(sb, s.body, indent+1)
		sb.WriteString(strings.Repeat("  ", indent) + "}")
		if s.elseIf {
			sb.WriteString(" else ")
			formatStmt(sb, s.els[0], indent)
		} else if len(s.els) > 0 {
			sb.WriteString(" else {\n")
			formatBlock(sb, s.els, indent+1)
			sb.WriteString(strings.Repeat("  ", indent) + "}")
		}
	}
}

// ---- interpreter ----

// Result is what a run produced.
type Result struct {
	Output string // everything printed, one value and a newline per print
	Steps  int
	// MaxAbs is the largest absolute value assigned or printed.
	MaxAbs int64
}

type machine struct {
	// loopOnce runs a while loop's body at most once, with no test after it: the flawed executor of the
	// code family (Code.FlawedSolution), a program read with "while" taken for "if".
	loopOnce bool
	lim      Limits
	vars     map[string]int64
	out      strings.Builder
	steps    int
	trace    *strings.Builder
	res      Result
}

// Run parses and runs src under lim.
func Run(src string, lim Limits) (Result, error) {
	p, err := Parse(src, lim)
	if err != nil {
		return Result{}, err
	}
	return p.Run(lim, nil)
}

// Run executes the program under lim. When trace is not nil, one line per statement executed is written to
// it (see the file comment). The output printed before an error is returned with the error.
func (p *Program) Run(lim Limits, trace *strings.Builder) (Result, error) {
	return p.run(lim, trace, false)
}

// run is Run, with loopOnce for the flawed executor (see machine).
func (p *Program) run(lim Limits, trace *strings.Builder, loopOnce bool) (Result, error) {
	m := &machine{lim: lim.withDefaults(), vars: map[string]int64{}, trace: trace, loopOnce: loopOnce}
	err := m.block(p.stmts)
	m.res.Output = m.out.String()
	m.res.Steps = m.steps
	return m.res, err
}

func (m *machine) step(line int) error {
	m.steps++
	if m.steps > m.lim.MaxSteps {
		return fmt.Errorf("line %d: %w (%d)", line, ErrStepLimit, m.lim.MaxSteps)
	}
	return nil
}

func (m *machine) block(stmts []*stmt) error {
	for _, s := range stmts {
		if err := m.stmt(s); err != nil {
			return err
		}
	}
	return nil
}

func (m *machine) note(v int64) {
	a := v
	if a < 0 {
		a = -a // MinInt64 stays negative: treat as the largest
		if a < 0 {
			a = math.MaxInt64
		}
	}
	m.res.MaxAbs = max(m.res.MaxAbs, a)
}

// traceExpr writes "substituted=value", or just the value when the expression is that value's literal.
func (m *machine) traceExpr(e *expr, v int64) {
	var sb strings.Builder
	exprString(&sb, e, "", m.lookup)
	s, vs := sb.String(), strconv.FormatInt(v, 10)
	if s != vs && s != "("+vs+")" {
		m.trace.WriteString(s + "=")
	}
	m.trace.WriteString(vs)
}

func (m *machine) lookup(name string) (int64, bool) {
	v, ok := m.vars[name]
	return v, ok
}

func (m *machine) stmt(s *stmt) error {
	if err := m.step(s.line); err != nil {
		return err
	}
	switch s.kind {
	case sAssign:
		v, err := m.eval(s.e, s.line)
		if err != nil {
			return err
		}
		if m.trace != nil {
			m.trace.WriteString(s.name + "=")
			m.traceExpr(s.e, v)
			m.trace.WriteByte('\n')
		}
		if _, ok := m.vars[s.name]; !ok && len(m.vars) >= m.lim.MaxVars {
			return fmt.Errorf("line %d: %w: more than %d variables", s.line, ErrMemoryLimit, m.lim.MaxVars)
		}
		m.vars[s.name] = v
		m.note(v)
	case sPrint:
		v, err := m.eval(s.e, s.line)
		if err != nil {
			return err
		}
		if m.trace != nil {
			m.trace.WriteString("print ")
			m.traceExpr(s.e, v)
			m.trace.WriteByte('\n')
		}
		text := strconv.FormatInt(v, 10) + "\n"
		if m.out.Len()+len(text) > m.lim.MaxOutput {
			return fmt.Errorf("line %d: %w (%d bytes)", s.line, ErrOutputLimit, m.lim.MaxOutput)
		}
		m.out.WriteString(text)
		m.note(v)
	case sWhile:
		for {
			ok, err := m.cond(s, "while")
			if err != nil || !ok {
				return err
			}
			if err := m.block(s.body); err != nil {
				return err
			}
			if m.loopOnce {
				return nil
			}
			if err := m.step(s.line); err != nil { // the next test
				return err
			}
		}
	case sIf:
		ok, err := m.cond(s, "if")
		if err != nil {
			return err
		}
		if ok {
			return m.block(s.body)
		}
		return m.block(s.els)
	}
	return nil
}

func (m *machine) cond(s *stmt, word string) (bool, error) {
	v, err := m.eval(s.e, s.line)
	if err != nil {
		return false, err
	}
	if m.trace != nil {
		var sb strings.Builder
		exprString(&sb, s.e, "", m.lookup)
		ans := "no"
		if v != 0 {
			ans = "yes"
		}
		m.trace.WriteString(word + " " + sb.String() + ": " + ans + "\n")
	}
	return v != 0, nil
}

func (m *machine) eval(e *expr, line int) (int64, error) {
	if err := m.step(line); err != nil {
		return 0, err
	}
	switch e.kind {
	case eInt:
		return e.val, nil
	case eVar:
		v, ok := m.vars[e.name]
		if !ok {
			return 0, fmt.Errorf("line %d: %w: %s is not set", line, ErrRuntime, e.name)
		}
		return v, nil
	case eNeg:
		x, err := m.eval(e.l, line)
		if err != nil {
			return 0, err
		}
		if x == math.MinInt64 {
			return 0, fmt.Errorf("line %d: %w: overflow in -(%d)", line, ErrRuntime, x)
		}
		return -x, nil
	}
	a, err := m.eval(e.l, line)
	if err != nil {
		return 0, err
	}
	b, err := m.eval(e.r, line)
	if err != nil {
		return 0, err
	}
	overflow := func() (int64, error) {
		return 0, fmt.Errorf("line %d: %w: overflow in %d %s %d", line, ErrRuntime, a, e.op, b)
	}
	switch e.op {
	case "+":
		c := a + b
		if (c > a) != (b > 0) {
			return overflow()
		}
		return c, nil
	case "-":
		c := a - b
		if (c < a) != (b > 0) {
			return overflow()
		}
		return c, nil
	case "*":
		if a == 0 || b == 0 {
			return 0, nil
		}
		c := a * b
		if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
			return overflow()
		}
		return c, nil
	case "/", "%":
		if b == 0 {
			return 0, fmt.Errorf("line %d: %w: division by zero", line, ErrRuntime)
		}
		if a == math.MinInt64 && b == -1 {
			return overflow()
		}
		if e.op == "/" {
			return a / b, nil
		}
		return a % b, nil
	}
	var c bool
	switch e.op {
	case "<":
		c = a < b
	case "<=":
		c = a <= b
	case ">":
		c = a > b
	case ">=":
		c = a >= b
	case "==":
		c = a == b
	case "!=":
		c = a != b
	}
	if c {
		return 1, nil
	}
	return 0, nil
}
