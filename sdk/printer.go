package sdk

import (
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// messagePrinter renders validation messages in English.
var messagePrinter = message.NewPrinter(language.English)
