// params.go parses the string knobs of Options.Params: each family declares its keys with defaults, and a
// params reader converts them (integers with bounds, fractions, booleans, comma lists of allowed names),
// naming the family and the key in every error and refusing keys no family declared.

package envs

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type params struct {
	family string
	m      map[string]string
	known  []string
	errs   []error
}

func newParams(family string, m map[string]string) *params {
	return &params{family: family, m: m}
}

func (p *params) get(key string) (string, bool) {
	p.known = append(p.known, key)
	v, ok := p.m[key]
	return strings.TrimSpace(v), ok
}

func (p *params) fail(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("params.%s: %s", key, fmt.Sprintf(format, args...)))
}

// int reads an integer in [lo, hi].
func (p *params) int(key string, def, lo, hi int) int {
	s, ok := p.get(key)
	if !ok {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		p.fail(key, "want an integer, got %q", s)
		return def
	}
	if v < lo || v > hi {
		p.fail(key, "%d is outside [%d, %d]", v, lo, hi)
		return def
	}
	return v
}

// float reads a number in [lo, hi].
func (p *params) float(key string, def, lo, hi float64) float64 {
	s, ok := p.get(key)
	if !ok {
		return def
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.fail(key, "want a number, got %q", s)
		return def
	}
	if !(v >= lo && v <= hi) {
		p.fail(key, "%v is outside [%v, %v]", v, lo, hi)
		return def
	}
	return v
}

func (p *params) bool(key string, def bool) bool {
	s, ok := p.get(key)
	if !ok {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		p.fail(key, "want true or false, got %q", s)
		return def
	}
	return v
}

func (p *params) str(key, def string) string {
	s, ok := p.get(key)
	if !ok {
		return def
	}
	return s
}

// oneOf reads one name from allowed; absent means def.
func (p *params) oneOf(key, def string, allowed []string) string {
	s, ok := p.get(key)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, s) {
		p.fail(key, "%q is not one of %s", s, strings.Join(allowed, ", "))
		return def
	}
	return s
}

// list reads a comma-separated list of names from allowed (repeats weight a name); empty means def.
func (p *params) list(key string, def, allowed []string) []string {
	s, ok := p.get(key)
	if !ok || s == "" {
		return def
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(allowed, f) {
			p.fail(key, "%q is not one of %s", f, strings.Join(allowed, ", "))
			continue
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// done reports every error, including the keys that were never read.
func (p *params) done() error {
	var unknown []string
	for k := range p.m {
		if !slices.Contains(p.known, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		known := slices.Clone(p.known)
		sort.Strings(known)
		p.errs = append(p.errs, fmt.Errorf("params.%s: unknown key (the %s family knows %s)", k, p.family, strings.Join(known, ", ")))
	}
	return errors.Join(p.errs...)
}
