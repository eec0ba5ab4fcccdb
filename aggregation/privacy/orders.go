package privacy

// MaxOrder is the largest Rényi order an accountant accepts. Integer orders
// cost O(order) work each, and orders beyond a few thousand never give the
// best epsilon for any practical delta.
const MaxOrder = 1 << 16

// DefaultOrders returns the order list used when Config.Orders is nil. It is
// dp_accounting's DEFAULT_RDP_ORDERS: 1.1, 1.2, ..., 10.9, the integers 11 to
// 63, and 128, 256, 512, 1024.
func DefaultOrders() []float64 {
	o := fineOrders()
	for i := 11; i < 64; i++ {
		o = append(o, float64(i))
	}
	return append(o, 128, 256, 512, 1024)
}

// TFPrivacyOrders returns the list used by TF Privacy's tutorials and RDP
// accountant and by Opacus (DEFAULT_ALPHAS): 1.1, 1.2, ..., 10.9 and the
// integers 12 to 63.
func TFPrivacyOrders() []float64 {
	o := fineOrders()
	for i := 12; i < 64; i++ {
		o = append(o, float64(i))
	}
	return o
}

// DPSGDOrders returns the list used by TF Privacy's compute_dp_sgd_privacy:
// 1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, the integers 5 to 63, and
// 128, 256, 512.
func DPSGDOrders() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for i := 5; i < 64; i++ {
		o = append(o, float64(i))
	}
	return append(o, 128, 256, 512)
}

// fineOrders returns 1 + x/10 for x = 1..99, computed as Python does.
func fineOrders() []float64 {
	o := make([]float64, 0, 160)
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	return o
}
