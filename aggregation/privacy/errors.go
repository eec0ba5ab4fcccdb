package privacy

import (
	"errors"
	"fmt"
)

// ErrUnsupported is returned when a mechanism is added to an accountant whose
// neighbouring relation it cannot be analysed under: Poisson sampling needs
// AddOrRemoveOne, fixed-size sampling without replacement needs ReplaceOne.
var ErrUnsupported = errors.New("privacy: mechanism not supported under this neighbouring relation")

// ErrUnreachable is returned by calibration when no noise multiplier up to
// MaxNoiseMultiplier meets the target, usually because the target epsilon is
// below what the order list can express or the ledger has already spent it.
var ErrUnreachable = errors.New("privacy: target epsilon unreachable")

// ArgError reports an argument outside its domain. Arg names the argument as
// the caller wrote it ("q", "delta", "Config.Orders[3]").
type ArgError struct {
	Arg   string
	Value float64
	Want  string
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("privacy: %s = %v, want %s", e.Arg, e.Value, e.Want)
}

func argErr(arg string, v float64, want string) error {
	return &ArgError{Arg: arg, Value: v, Want: want}
}

// checkUnit checks 0 <= v <= 1.
func checkUnit(arg string, v float64) error {
	if !(v >= 0 && v <= 1) {
		return argErr(arg, v, "in [0, 1]")
	}
	return nil
}

// checkNonNeg checks 0 <= v < +Inf.
func checkNonNeg(arg string, v float64) error {
	if !(v >= 0 && v < inf) {
		return argErr(arg, v, "finite and >= 0")
	}
	return nil
}

// checkPos checks 0 < v < +Inf.
func checkPos(arg string, v float64) error {
	if !(v > 0 && v < inf) {
		return argErr(arg, v, "finite and > 0")
	}
	return nil
}

// checkDelta checks 0 < delta < 1.
func checkDelta(arg string, v float64) error {
	if !(v > 0 && v < 1) {
		return argErr(arg, v, "in (0, 1)")
	}
	return nil
}
