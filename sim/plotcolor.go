package sim

import "image/color"

var plotColor = color.RGBA{R: 200, G: 60, B: 40, A: 255}
