// decode.go turns recipe YAML and `--set a.b.c=value` overrides into a Config.
//
// The YAML is parsed by github.com/goccy/go-yaml into an AST, which is then walked alongside the Go structs
// (by their yaml tags) instead of being handed to the library's unmarshaller. Walking it ourselves gives
// strict decoding with messages that name the file, the line and the full key ("x.yaml:12: optimizer.lrr:
// unknown key (did you mean lr?)", "x.yaml:7: train.steps: want an integer, got \"abc\""), and it gives the
// overlay semantics for free: a struct is only touched at the keys the YAML sets, so decoding onto a struct
// pre-filled with defaults (or with the top-level sections, for a stage) changes exactly those keys.
//
// Order of resolution: defaults ← the file's top-level keys ← top-level --set overrides ← for each stage, a
// copy of the resolved top-level sections ← the stage's own YAML ← --set stages.<name>.… overrides. Every
// key's origin (file line or --set expression) is remembered so that validation errors can point at it.

package configs

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// origin is where a key's value came from: a file line or a --set expression (line 0).
type origin struct {
	source string
	line   int
}

// decoder walks YAML nodes onto Go values, collecting every error instead of stopping at the first.
type decoder struct {
	source  string // file name, or "--set key=value"
	lines   bool   // whether node lines mean anything (not for --set values)
	anchors map[string]ast.Node
	origins map[string]origin
	errs    []error
}

// Parse decodes a recipe (data, read from filename, which is used in messages and to default the name),
// applies the --set overrides and validates the result.
func Parse(data []byte, filename string, sets []string) (*Config, error) {
	c, origins, err := decode(data, filename, sets)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, locate(err, origins, filename)
	}
	return c, nil
}

// decode resolves a recipe without validating it.
func decode(data []byte, filename string, sets []string) (*Config, map[string]origin, error) {
	d := &decoder{source: filename, lines: true, anchors: map[string]ast.Node{}, origins: map[string]origin{}}
	c := Default()
	cv := reflect.ValueOf(c).Elem()

	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, nil, syntaxError(filename, err)
	}
	var body ast.Node
	switch len(f.Docs) {
	case 0:
	case 1:
		body = f.Docs[0].Body
	default:
		second := f.Docs[1].GetToken()
		if f.Docs[1].Start != nil {
			second = f.Docs[1].Start
		}
		return nil, nil, &KeyError{Source: filename, Line: second.Position.Line,
			Msg: fmt.Sprintf("want one YAML document, found %d", len(f.Docs))}
	}
	stagesKV := d.mapping(body, cv, "", "stages")

	var topSets, stageSets []setExpr
	for _, s := range sets {
		e, err := parseSet(s)
		if err != nil {
			d.errs = append(d.errs, err)
			continue
		}
		if e.path[0] == "stages" {
			stageSets = append(stageSets, e)
		} else {
			topSets = append(topSets, e)
		}
	}
	for _, e := range topSets {
		d.applySet(c, e)
	}

	d.source, d.lines = filename, true
	if stagesKV == nil || isNull(d.resolve(stagesKV.Value, "stages")) {
		c.Stages = []Stage{c.newStage(KindPretrain, KindPretrain)}
	} else {
		d.origins["stages"] = d.here(stagesKV.Key)
		c.Stages = d.stages(stagesKV.Value, c)
	}
	for _, e := range stageSets {
		d.applySet(c, e)
	}

	if c.Name == "" && filename != "" {
		base := filepath.Base(filename)
		c.Name = strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	}
	if len(d.errs) > 0 {
		return nil, nil, errors.Join(d.errs...)
	}
	return c, d.origins, nil
}

// syntaxError renders a parser error as "file:line: invalid YAML: message".
func syntaxError(filename string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		return &KeyError{Source: filename, Line: ye.GetToken().Position.Line, Msg: "invalid YAML: " + ye.GetMessage()}
	}
	return &KeyError{Source: filename, Msg: "invalid YAML: " + err.Error()}
}

// stages decodes the stages list: each stage starts from a copy of the resolved top-level sections.
func (d *decoder) stages(n ast.Node, c *Config) []Stage {
	n = d.resolve(n, "stages")
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(n, "stages", "want a list of stages, got %s", describe(n))
		return nil
	}
	out := make([]Stage, 0, len(seq.Values))
	for i, elem := range seq.Values {
		elem = d.resolve(elem, fmt.Sprintf("stages[%d]", i))
		label := stageLabel("", i)
		if pairs, ok := mappingPairs(elem); ok {
			for _, kv := range pairs {
				if keyText(kv.Key) == "name" {
					if s, ok := scalarText(d.resolve(kv.Value, label+".name")); ok && s != "" {
						label = stageLabel(s, i)
					}
				}
			}
		}
		if elem == nil || elem.Type() != ast.MappingType && elem.Type() != ast.MappingValueType {
			d.fail(elem, label, "want a mapping (name, kind, init_from and sections), got %s", describe(elem))
			continue
		}
		d.origins[label] = d.here(elem)
		st := c.newStage("", "")
		d.mapping(elem, reflect.ValueOf(&st).Elem(), label, "")
		out = append(out, st)
	}
	return out
}

// here is the origin of node n under the current source.
func (d *decoder) here(n ast.Node) origin {
	o := origin{source: d.source}
	if d.lines && n != nil && n.GetToken() != nil {
		o.line = n.GetToken().Position.Line
	}
	return o
}

func (d *decoder) fail(n ast.Node, key, format string, args ...any) {
	o := d.here(n)
	d.errs = append(d.errs, &KeyError{Source: o.source, Line: o.line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// unknown reports an unknown key, suggesting the closest known one or listing them.
func (d *decoder) unknown(n ast.Node, key, name string, known []string) {
	o := d.here(n)
	d.errs = append(d.errs, &KeyError{Source: o.source, Line: o.line, Key: key, Msg: suggest(name, known), unknownKey: true})
}

// suggest returns "(did you mean x?)" for a close known key, else "(known keys: a, b, …)".
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := editDistance(name, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	if best != "" {
		return "(did you mean " + best + "?)"
	}
	return "(known keys: " + strings.Join(known, ", ") + ")"
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// resolve follows anchors, aliases and tags to the node that holds the value.
func (d *decoder) resolve(n ast.Node, key string) ast.Node {
	for range 64 {
		switch x := n.(type) {
		case *ast.AnchorNode:
			d.anchors[x.Name.GetToken().Value] = x.Value
			n = x.Value
		case *ast.AliasNode:
			name := x.Value.GetToken().Value
			target, ok := d.anchors[name]
			if !ok {
				d.fail(n, key, "unknown alias *%s", name)
				return nil
			}
			n = target
		case *ast.TagNode:
			n = x.Value
		default:
			return n
		}
	}
	d.fail(n, key, "aliases nested too deep")
	return nil
}

func isNull(n ast.Node) bool { return n == nil || n.Type() == ast.NullType }

// describe names a node in a "got …" message.
func describe(n ast.Node) string {
	switch {
	case isNull(n):
		return "null"
	case n.Type() == ast.MappingType || n.Type() == ast.MappingValueType:
		return "a mapping"
	case n.Type() == ast.SequenceType:
		return "a list"
	}
	if s, ok := scalarText(n); ok {
		return strconv.Quote(s)
	}
	return n.Type().String()
}

// scalarText is the text of a scalar node as written (without quotes).
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return x.GetToken().Value, true
	}
	return "", false
}

func keyText(k ast.MapKeyNode) string {
	if s, ok := scalarText(k); ok {
		return s
	}
	return k.GetToken().Value
}

func mappingPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch x := n.(type) {
	case *ast.MappingNode:
		return x.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{x}, true
	}
	return nil, false
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// yamlKey is the YAML key of a struct field.
func yamlKey(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// fieldIndex maps the YAML keys of struct type t to field indices.
func fieldIndex(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("yaml") != "-" {
			m[yamlKey(f)] = i
		}
	}
	return m
}

// fieldKeys lists the YAML keys of struct type t in declaration order.
func fieldKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("yaml") != "-" {
			keys = append(keys, yamlKey(f))
		}
	}
	return keys
}

// mapping decodes mapping node n onto struct v, key by key. The pair whose key is skip is not decoded but
// returned (the top-level "stages", decoded after the overrides).
func (d *decoder) mapping(n ast.Node, v reflect.Value, key, skip string) (skipped *ast.MappingValueNode) {
	n = d.resolve(n, key)
	if isNull(n) {
		return nil // an empty section changes nothing
	}
	pairs, ok := mappingPairs(n)
	if !ok {
		d.fail(n, key, "want a mapping, got %s", describe(n))
		return nil
	}
	idx := fieldIndex(v.Type())
	for _, kv := range pairs {
		if kv.Key.IsMergeKey() {
			d.fail(kv.Key, key, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		name := keyText(kv.Key)
		sub := join(key, name)
		if name == skip && skip != "" {
			skipped = kv
			continue
		}
		i, ok := idx[name]
		if !ok {
			d.unknown(kv.Key, sub, name, fieldKeys(v.Type()))
			continue
		}
		d.origins[sub] = d.here(kv.Key)
		d.value(kv.Value, v.Field(i), sub)
	}
	return skipped
}

// value decodes node n onto v, whose kind decides what n may be.
func (d *decoder) value(n ast.Node, v reflect.Value, key string) {
	n = d.resolve(n, key)
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, key, "")
	case reflect.Slice:
		d.sequence(n, v, key)
	case reflect.Map:
		d.mapOf(n, v, key)
	case reflect.String:
		if isNull(n) {
			v.SetString("")
			return
		}
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, key, "want a string, got %s", describe(n))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, key, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := intValue(n)
		if !ok {
			d.fail(n, key, "want an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(n, key, "%d is out of range for %s", i, v.Type())
			return
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		f, ok := floatValue(n)
		if !ok {
			d.fail(n, key, "want a number, got %s", describe(n))
			return
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			d.fail(n, key, "want a finite number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("configs: field %s has unsupported type %s", key, v.Type()))
	}
}

func intValue(n ast.Node) (int64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			return i, true
		case uint64:
			if i <= math.MaxInt64 {
				return int64(i), true
			}
		}
	case *ast.FloatNode:
		if x.Value == math.Trunc(x.Value) && math.Abs(x.Value) < 1<<53 {
			return int64(x.Value), true
		}
	case *ast.StringNode:
		// Exponent forms such as 1e3 are plain strings to the parser.
		if x.Token.Type == token.StringType {
			if f, err := strconv.ParseFloat(x.Value, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				return int64(f), true
			}
		}
	}
	return 0, false
}

func floatValue(n ast.Node) (float64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			return float64(i), true
		case uint64:
			return float64(i), true
		}
	case *ast.FloatNode:
		return x.Value, true
	case *ast.InfinityNode:
		return x.Value, true
	case *ast.NanNode:
		return math.NaN(), true
	case *ast.StringNode:
		// The parser reads exponent forms without a dot (3e-3, 1e-08) as plain strings; a quoted
		// string stays a string.
		if x.Token.Type == token.StringType {
			if f, err := strconv.ParseFloat(x.Value, 64); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// sequence decodes a list onto slice v, replacing it as a whole.
func (d *decoder) sequence(n ast.Node, v reflect.Value, key string) {
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(n, key, "want a list, got %s", describe(n))
		return
	}
	if len(seq.Values) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, elem := range seq.Values {
		d.value(elem, out.Index(i), fmt.Sprintf("%s[%d]", key, i))
	}
	v.Set(out)
}

// mapOf decodes a mapping onto a map with string keys, adding or replacing entries.
func (d *decoder) mapOf(n ast.Node, v reflect.Value, key string) {
	if v.Type().Key().Kind() != reflect.String {
		panic(fmt.Sprintf("configs: field %s has unsupported type %s", key, v.Type()))
	}
	if isNull(n) {
		return
	}
	pairs, ok := mappingPairs(n)
	if !ok {
		d.fail(n, key, "want a mapping, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, kv := range pairs {
		name := keyText(kv.Key)
		sub := join(key, name)
		d.origins[sub] = d.here(kv.Key)
		elem := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(name).Convert(v.Type().Key())); old.IsValid() {
			elem.Set(deepCopy(old))
		}
		d.value(kv.Value, elem, sub)
		v.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), elem)
	}
}

// setExpr is one parsed `--set a.b.c=value`.
type setExpr struct {
	expr  string
	path  []string
	value string
}

func parseSet(s string) (setExpr, error) {
	src := "--set " + s
	k, v, ok := strings.Cut(s, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return setExpr{}, &KeyError{Source: src, Msg: "want key=value, e.g. --set optimizer.lr=1e-3"}
	}
	path := strings.Split(k, ".")
	if slices.Contains(path, "") {
		return setExpr{}, &KeyError{Source: src, Key: k, Msg: "empty key segment"}
	}
	return setExpr{expr: s, path: path, value: v}, nil
}

var configType = reflect.TypeOf(Config{})

// applySet walks the key path of e to its field and decodes the value onto it. Stage keys are addressed
// by instance name: stages.<name>.<key>…, and named stages[<name>].<key>… in messages.
func (d *decoder) applySet(c *Config, e setExpr) {
	d.source, d.lines = "--set "+e.expr, false
	v := reflect.ValueOf(c).Elem()
	display := ""
	stage := -1
	for i := 0; i < len(e.path); i++ {
		seg := e.path[i]
		if v.Kind() != reflect.Struct {
			d.fail(nil, display, "is a value, not a section: cannot set %s inside it", strings.Join(e.path[i:], "."))
			return
		}
		if v.Type() == configType && seg == "stages" {
			if i+1 >= len(e.path) {
				d.fail(nil, "stages", "set keys of one stage: stages.<name>.<key>=value (stages: %s)", strings.Join(c.StageNames(), ", "))
				return
			}
			name := e.path[i+1]
			j := slices.IndexFunc(c.Stages, func(s Stage) bool { return s.Name == name })
			if j < 0 {
				d.fail(nil, "stages."+name, "no stage named %q (stages: %s)", name, strings.Join(c.StageNames(), ", "))
				return
			}
			v = reflect.ValueOf(&c.Stages[j]).Elem()
			display = stageLabel(name, j)
			stage = j
			i++
			continue
		}
		fi, ok := fieldIndex(v.Type())[seg]
		if !ok {
			d.unknown(nil, join(display, seg), seg, fieldKeys(v.Type()))
			return
		}
		v = v.Field(fi)
		display = join(display, seg)
	}
	d.origins[display] = origin{source: d.source}
	if stage >= 0 {
		// A renamed stage is named by its new name in validation messages.
		defer func() {
			label := stageLabel(c.Stages[stage].Name, stage)
			d.origins[label+strings.TrimPrefix(display, stageLabel(e.path[1], stage))] = origin{source: d.source}
		}()
	}

	// A string field takes the text as typed (so "a #1" keeps its "#1"), unless it is quoted.
	if v.Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(e.value), `"`) && !strings.HasPrefix(strings.TrimSpace(e.value), `'`) {
		v.SetString(e.value)
		return
	}
	f, err := parser.ParseBytes([]byte(e.value), 0)
	if err != nil {
		msg := err.Error()
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
		}
		d.fail(nil, display, "cannot parse value %q: %s", e.value, msg)
		return
	}
	if len(f.Docs) > 1 {
		d.fail(nil, display, "cannot parse value %q: more than one YAML document", e.value)
		return
	}
	var n ast.Node
	if len(f.Docs) == 1 {
		n = f.Docs[0].Body
	}
	d.value(n, v, display)
}

// locate gives each validation error the origin of its key: the file line or --set expression that set
// it, else the nearest enclosing section that was set, else just the file.
func locate(err error, origins map[string]origin, filename string) error {
	var out []error
	for _, e := range flatten(err) {
		var ke *KeyError
		if !errors.As(e, &ke) {
			k, msg, ok := strings.Cut(e.Error(), ": ")
			if !ok {
				k, msg = "", e.Error()
			}
			ke = &KeyError{Key: k, Msg: msg}
		}
		if ke.Source == "" {
			ke.Source = filename
			for _, cand := range originCandidates(ke.Key, ke.related) {
				if o, ok := origins[cand]; ok {
					ke.Source, ke.Line = o.source, o.line
					break
				}
			}
		}
		out = append(out, ke)
	}
	return errors.Join(out...)
}

// flatten lists the leaves of a tree of joined errors.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// originCandidates lists the keys whose origin may stand for key, best first: the key itself, the same key
// at top level when key is inside a stage (the stage inherited it), the related keys of a cross-field rule,
// then the enclosing sections.
func originCandidates(key string, related []string) []string {
	stage, rest := "", key
	if strings.HasPrefix(key, "stages[") {
		if i := strings.Index(key, "]"); i > 0 {
			stage = key[:i+1]
			rest = strings.TrimPrefix(key[i+1:], ".")
		}
	}
	var out []string
	add := func(k string) {
		if k != "" && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	add(key)
	if stage != "" {
		add(rest)
	}
	for _, r := range related {
		if stage != "" {
			add(join(stage, r))
		}
		add(r)
	}
	if stage != "" {
		for _, p := range parentKeys(rest) {
			add(join(stage, p))
		}
		add(stage)
		for _, p := range parentKeys(rest) {
			add(p)
		}
		add("stages")
	} else {
		for _, p := range parentKeys(key) {
			add(p)
		}
	}
	return out
}

// parentKeys lists the enclosing keys of key, innermost first: data.ops[1] → data.ops, data.
func parentKeys(key string) []string {
	var out []string
	for {
		if i := strings.LastIndex(key, "["); i > 0 && strings.HasSuffix(key, "]") && !strings.Contains(key[i:], ".") {
			key = key[:i]
		} else if i := strings.LastIndex(key, "."); i > 0 {
			key = key[:i]
		} else {
			return out
		}
		out = append(out, key)
	}
}
