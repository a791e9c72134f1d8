// recipes.go embeds the shipped recipes (configs/*.yaml) so that `trainer run math` works outside the
// repository, and implements Load, which takes a file path or a recipe name.

package configs

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

//go:embed *.yaml
var recipeFS embed.FS

// Recipes lists the names of the embedded recipes (configs/*.yaml without the extension), sorted.
func Recipes() []string { return YAMLNames(recipeFS, ".") }

// YAMLNames lists the names of the .yaml files in dir of an embedded file system (without the extension),
// sorted: the recipes a binary carries.
func YAMLNames(fsys fs.FS, dir string) []string {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("configs: embedded recipes in %s: %v", dir, err)) // the embed is fixed at build time
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// RecipeSource returns the text of an embedded recipe, named as Load accepts it ("math", "math.yaml",
// "configs/math.yaml").
func RecipeSource(name string) ([]byte, error) {
	data, err := recipeFS.ReadFile(recipeName(name) + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("configs: no embedded recipe %q (recipes: %s)", name, strings.Join(Recipes(), ", "))
	}
	return data, nil
}

// recipeName strips the forms a recipe may be named by down to its base name.
func recipeName(s string) string {
	s = strings.TrimPrefix(s, "./")
	s = strings.TrimPrefix(s, "configs/")
	s = strings.TrimSuffix(s, ".yaml")
	return s
}

// Load reads a recipe: pathOrName is an existing file, or else the name of an embedded recipe ("math",
// "math.yaml" or "configs/math.yaml"). The --set overrides (each "a.b.c=value") apply after the file and
// before validation.
func Load(pathOrName string, sets []string) (*Config, error) {
	st, err := os.Stat(pathOrName)
	if err == nil && !st.IsDir() {
		data, err := os.ReadFile(pathOrName)
		if err != nil {
			return nil, fmt.Errorf("configs: %w", err)
		}
		return Parse(data, pathOrName, sets)
	}
	name := recipeName(pathOrName)
	if !strings.Contains(name, "/") {
		if data, rerr := recipeFS.ReadFile(name + ".yaml"); rerr == nil {
			return Parse(data, "configs/"+name+".yaml", sets)
		}
	}
	why := "is a directory"
	if err != nil {
		why = "is not a file (" + err.Error() + ")"
	}
	return nil, fmt.Errorf("configs: %q %s and not an embedded recipe (recipes: %s)", pathOrName, why, strings.Join(Recipes(), ", "))
}
