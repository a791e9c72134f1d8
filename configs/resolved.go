// resolved.go writes a Config back as YAML: every key, with the stages fully resolved, so that the file
// describes the run on its own (runs/<name>/config.yaml) and Load reads it back to an equal Config.

package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goccy/go-yaml"
)

const resolvedHeader = "# Resolved Sparrow config: defaults, recipe and --set overrides applied; every stage fully resolved.\n" +
	"# `trainer run <this file>` runs it again.\n"

// YAML returns the fully resolved config as YAML, every key written.
func (c *Config) YAML() ([]byte, error) {
	body, err := yaml.MarshalWithOptions(c, yaml.Indent(2), yaml.IndentSequence(true))
	if err != nil {
		return nil, fmt.Errorf("configs: marshal %s: %w", c.Name, err)
	}
	return append([]byte(resolvedHeader), body...), nil
}

// WriteResolved writes the fully resolved config to path (atomically: a temporary file renamed into place).
func (c *Config) WriteResolved(path string) error {
	data, err := c.YAML()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("configs: write resolved config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("configs: write resolved config %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("configs: write resolved config %s: %w", tmp.Name(), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("configs: write resolved config %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("configs: write resolved config %s: %w", path, err)
	}
	return nil
}

// Hash is the hex sha256 of the resolved YAML: two configs that train the same way have the same hash.
func (c *Config) Hash() string {
	data, err := c.YAML()
	if err != nil {
		// Config holds only strings, numbers, booleans, slices and structs of them: marshalling cannot fail.
		panic(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
