package sdk

import "regexp"

// placeholder matches a {name} placeholder in an OAuth URL template.
var placeholder = regexp.MustCompile(`\{[a-zA-Z_][a-zA-Z0-9_]*\}`)
