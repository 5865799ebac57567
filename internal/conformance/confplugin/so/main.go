// Command so is the conformance plugin built with -buildmode=plugin for the
// .so row: it links package confplugin, which registers conf-a and conf-b.
package main

import _ "github.com/plugbus/plugbus/internal/conformance/confplugin"

func main() {}
