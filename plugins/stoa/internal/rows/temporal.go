package rows

import (
	"math/bits"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal"
)

// Fast formatting of dates, times and decimals: the hot paths of row
// encoding. Values outside the ranges handled here (years before 0000 or
// after 9999, times of day outside one day) fall back to package time, which
// gives the same output for the values both handle (tests check this).

// perSecond is the number of units in a second, and the fraction digits.
func perSecond(u arrow.TimeUnit) (int64, int) {
	switch u {
	case arrow.Millisecond:
		return 1e3, 3
	case arrow.Microsecond:
		return 1e6, 6
	case arrow.Nanosecond:
		return 1e9, 9
	}
	return 1, 0
}

func floorDiv(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q--
		r += b
	}
	return q, r
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (H. Hinnant's civil_from_days).
func civil(days int64) (y int64, m, d int) {
	z := days + 719468
	era, doe := floorDiv(z, 146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendDigits appends v (≥ 0) zero-padded to width digits.
func appendDigits(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for ; width > 0 || v > 0; width-- {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

// maxFastDays bounds the day numbers formatted without package time:
// enough for years 0000..9999 with margin, small enough not to overflow.
const maxFastDays = 1 << 40

// appendDate appends "YYYY-MM-DD" (quoted) for days since the epoch.
func appendDate(dst []byte, days int64) []byte {
	if days > -maxFastDays && days < maxFastDays {
		if y, m, d := civil(days); y >= 0 && y <= 9999 {
			dst = append(dst, '"')
			dst = appendDigits(dst, y, 4)
			dst = append(dst, '-')
			dst = appendDigits(dst, int64(m), 2)
			dst = append(dst, '-')
			dst = appendDigits(dst, int64(d), 2)
			return append(dst, '"')
		}
	}
	return appendTime(dst, time.Unix(days*86400, 0), "2006-01-02")
}

// appendClock appends HH:MM:SS and the fraction.
func appendClock(dst []byte, secOfDay, frac int64, digits int) []byte {
	dst = appendDigits(dst, secOfDay/3600, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, secOfDay/60%60, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, secOfDay%60, 2)
	if digits > 0 {
		dst = append(dst, '.')
		dst = appendDigits(dst, frac, digits)
	}
	return dst
}

// appendTimestamp appends the quoted RFC 3339 form of v units since the
// epoch in UTC, with the unit's fraction digits and, when zoned, "Z".
func appendTimestamp(dst []byte, v int64, u arrow.TimeUnit, zoned bool) []byte {
	per, digits := perSecond(u)
	sec, frac := floorDiv(v, per)
	days, sod := floorDiv(sec, 86400)
	if days > -maxFastDays && days < maxFastDays {
		if y, m, d := civil(days); y >= 0 && y <= 9999 {
			dst = append(dst, '"')
			dst = appendDigits(dst, y, 4)
			dst = append(dst, '-')
			dst = appendDigits(dst, int64(m), 2)
			dst = append(dst, '-')
			dst = appendDigits(dst, int64(d), 2)
			dst = append(dst, 'T')
			dst = appendClock(dst, sod, frac, digits)
			if zoned {
				dst = append(dst, 'Z')
			}
			return append(dst, '"')
		}
	}
	layout := "2006-01-02T15:04:05" + fraction(u)
	if zoned {
		layout += "Z"
	}
	return appendTime(dst, instant(v, u), layout)
}

// appendTimeOfDay appends the quoted "HH:MM:SS[.fff]" of v units since
// midnight.
func appendTimeOfDay(dst []byte, v int64, u arrow.TimeUnit) []byte {
	per, digits := perSecond(u)
	if v >= 0 && v < 86400*per {
		dst = append(dst, '"')
		dst = appendClock(dst, v/per, v%per, digits)
		return append(dst, '"')
	}
	return appendTime(dst, instant(v, u), "15:04:05"+fraction(u))
}

// appendDecimal128 appends a decimal128 as a quoted exact decimal string.
func appendDecimal128(dst []byte, n decimal.Decimal128, scale int32) []byte {
	hi, lo := uint64(n.HighBits()), n.LowBits() //nolint:gosec // the two's complement bits, negated below
	neg := n.HighBits() < 0
	if neg { // two's complement negation of the 128-bit value
		lo = ^lo + 1
		hi = ^hi
		if lo == 0 {
			hi++
		}
	}
	var buf [40]byte
	return appendDecimalDigits(dst, neg, uint128Digits(buf[:0], hi, lo), scale)
}

// appendDecimalInt appends an int64-backed decimal (decimal32/64).
func appendDecimalInt(dst []byte, v int64, scale int32) []byte {
	var buf [20]byte
	mag := uint64(v) //nolint:gosec // the two's complement bits, negated below when v < 0
	if v < 0 {
		mag = -mag
	}
	return appendDecimalDigits(dst, v < 0, appendUintDigits(buf[:0], mag), scale)
}

func appendUintDigits(dst []byte, v uint64) []byte {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}

// uint128Digits appends the decimal digits of the 128-bit magnitude hi:lo.
func uint128Digits(dst []byte, hi, lo uint64) []byte {
	const chunk = 1e19 // the largest power of ten below 2^64
	if hi == 0 {
		return appendUintDigits(dst, lo)
	}
	// hi:lo = q*1e19 + r, with q < 2^128/1e19 < 2^65: divide again if needed.
	qhi := hi / chunk
	qlo, r := bits.Div64(hi%chunk, lo, chunk)
	dst = uint128Digits(dst, qhi, qlo)
	var buf [19]byte
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = byte('0' + r%10)
		r /= 10
	}
	return append(dst, buf[:]...)
}
