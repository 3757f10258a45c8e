package rows

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxSafeInt is the largest integer a JSON consumer using IEEE-754 doubles
// (JavaScript's Number.MAX_SAFE_INTEGER) represents exactly, and every integer
// up to it: 2^53 - 1.
const maxSafeInt = 1<<53 - 1

const hexDigits = "0123456789abcdef"

// plainASCII marks the ASCII bytes a JSON string holds as they are: not a
// control character, not '"', not '\\'.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; U+2028 and U+2029 are escaped so the output is also
// valid JavaScript.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plainASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendInt appends v as a JSON number when it is a safe integer, else as a
// JSON string of its decimal digits.
func appendInt(dst []byte, v int64) []byte {
	if v >= -maxSafeInt && v <= maxSafeInt {
		return strconv.AppendInt(dst, v, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '"')
}

// appendUint is appendInt for unsigned values.
func appendUint(dst []byte, v uint64) []byte {
	if v <= maxSafeInt {
		return strconv.AppendUint(dst, v, 10)
	}
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '"')
}

// appendFloat appends f as a JSON number formatted like encoding/json (the
// shortest representation that round-trips at the given bit size). NaN and
// the infinities, which JSON numbers cannot express, become the strings
// "NaN", "Infinity" and "-Infinity".
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// maxScaleDigits bounds the zeros a decimal with a large |scale| expands to;
// beyond it the value is written in exponent form.
const maxScaleDigits = 100

// appendDecimal appends the decimal unscaled×10^-scale as a JSON string of
// its exact decimal representation ("-12.3400").
func appendDecimal(dst []byte, unscaled *big.Int, scale int32) []byte {
	digits := unscaled.Append(nil, 10)
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	return appendDecimalDigits(dst, neg, digits, scale)
}

// appendDecimalDigits appends the decimal of sign neg, magnitude digits
// (decimal, no leading zeros) and scale as a quoted string.
func appendDecimalDigits(dst []byte, neg bool, digits []byte, scale int32) []byte {
	dst = append(dst, '"')
	if neg {
		dst = append(dst, '-')
	}
	zero := len(digits) == 1 && digits[0] == '0'
	switch {
	case scale == 0:
		dst = append(dst, digits...)
	case scale > maxScaleDigits || scale < -maxScaleDigits:
		dst = append(dst, digits...)
		dst = append(dst, 'E')
		dst = strconv.AppendInt(dst, -int64(scale), 10)
	case scale < 0:
		dst = append(dst, digits...)
		if !zero {
			dst = append(dst, strings.Repeat("0", int(-scale))...)
		}
	case len(digits) <= int(scale):
		dst = append(dst, '0', '.')
		dst = append(dst, strings.Repeat("0", int(scale)-len(digits))...)
		dst = append(dst, digits...)
	default:
		at := len(digits) - int(scale)
		dst = append(dst, digits[:at]...)
		dst = append(dst, '.')
		dst = append(dst, digits[at:]...)
	}
	return append(dst, '"')
}
