package idp

import "github.com/gatehouse-proxy/gatehouse/internal/fileerr"

// Error is one problem in a users file, with its position and the dotted
// path of the field it concerns. It prints as FILE:LINE:COL: PATH: MSG, the
// same format gatehouse's configuration errors use.
type Error = fileerr.Error

// Errors is every problem found in a users file, sorted by position. Its
// Error method prints one problem per line.
type Errors = fileerr.Errors
