package canon

import "testing"

var sink string

func BenchmarkPathClean(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = Path("/api/dashboard/12/cards/query")
	}
}

func BenchmarkPathDirty(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = Path("/api//dashboard/./12/%63ards/x/../query%3f%20")
	}
}

func BenchmarkPathRejected(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = Path("/api/dashboard/12/cards/..%2Fadmin")
	}
}

func BenchmarkHost(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = Host("metabase.example.com", true)
	}
}

func BenchmarkHostDirty(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = Host("Metabase.Example.com.:443", true)
	}
}
