package codehealth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// maxFuncLines is what fits on a screen.
const maxFuncLines = 80

// excluded are directories these checks never read: the npm suites'
// dependencies are not ours, and testdata is data.
var excluded = []string{"e2e/node_modules", "testdata"}

// goFile is one parsed file of the repository.
type goFile struct {
	path string // relative to the repository root
	fset *token.FileSet
	file *ast.File
	test bool
}

func repoFiles(t *testing.T) []goFile {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var out []goFile
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			for _, ex := range excluded {
				if rel == ex || strings.HasSuffix(rel, string(filepath.Separator)+ex) || strings.HasPrefix(rel, ".") && rel != "." {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		out = append(out, goFile{path: rel, fset: fset, file: f, test: strings.HasSuffix(path, "_test.go")})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("read %d Go files; the walk went wrong", len(out))
	}
	return out
}

// No non-test function or method is longer than a screen.
func TestFunctionsFitOnAScreen(t *testing.T) {
	for _, f := range repoFiles(t) {
		if f.test {
			continue
		}
		for _, d := range f.file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := f.fset.Position(fn.Pos()).Line, f.fset.Position(fn.End()).Line
			if n := end - start + 1; n > maxFuncLines {
				t.Errorf("%s:%d: %s is %d lines long (at most %d)", f.path, start, fn.Name.Name, n, maxFuncLines)
			}
		}
	}
}

// No non-test code fills anything in an init function: a list or a cache is
// an explicit input.
func TestNoInit(t *testing.T) {
	for _, f := range repoFiles(t) {
		if f.test {
			continue
		}
		for _, d := range f.file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "init" {
				t.Errorf("%s:%d: func init", f.path, f.fset.Position(fn.Pos()).Line)
			}
		}
	}
}

// trackerRef matches a comment that points at an issue tracker (the word
// issue, then a number) instead of saying the reason. A bare hash and a
// number is not one: comments use it for positions in a chain and for
// standards ("PKCS #8").
var trackerRef = regexp.MustCompile(`(?i)\bissues?\s+(#|no\.?\s*)?\d+`)

// No comment cites an issue tracker.
func TestNoTrackerReferences(t *testing.T) {
	for _, f := range repoFiles(t) {
		for _, cg := range f.file.Comments {
			for _, c := range cg.List {
				if m := trackerRef.FindString(c.Text); m != "" {
					t.Errorf("%s:%d: comment cites a tracker (%q): say the reason in words", f.path, f.fset.Position(c.Pos()).Line, strings.TrimSpace(m))
				}
			}
		}
	}
}
