package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// BinaryPrefix is the file name prefix of plugin binaries.
const BinaryPrefix = "connector-"

var appIDPattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// Binary is a plugin executable found in a plugin directory.
type Binary struct {
	AppID string
	Path  string
}

// Discover returns the plugin executables (connector-<app_id>) in dir,
// sorted by app_id. Non-executables and names that are not a valid app_id
// are skipped; a missing dir is an error.
func Discover(dir string) ([]Binary, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("plugin directory %s does not exist (build plugins with `make build`, or pass --plugins)", dir)
		}
		return nil, fmt.Errorf("reading plugin directory: %w", err)
	}
	var out []Binary
	for _, e := range entries {
		name := e.Name()
		appID, ok := strings.CutPrefix(name, BinaryPrefix)
		if !ok || !appIDPattern.MatchString(appID) {
			continue
		}
		path := filepath.Join(dir, name)
		info, err := os.Stat(path) // follows symlinks
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		out = append(out, Binary{AppID: appID, Path: abs})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].AppID < out[b].AppID })
	return out, nil
}

// FromPath returns the Binary of a plugin executable path.
func FromPath(path string) (Binary, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Binary{}, err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return Binary{}, fmt.Errorf("plugin binary: %w", err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return Binary{}, fmt.Errorf("plugin binary %s is not an executable file", path)
	}
	appID, ok := strings.CutPrefix(filepath.Base(abs), BinaryPrefix)
	if !ok || !appIDPattern.MatchString(appID) {
		appID = "" // learnt from Describe
	}
	return Binary{AppID: appID, Path: abs}, nil
}
