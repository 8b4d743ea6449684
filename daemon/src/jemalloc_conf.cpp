// jemalloc's settings for signalrd, built only when signalrd links jemalloc. jemalloc reads
// this symbol when the process starts; MALLOC_CONF in the environment still overrides it.
//
// Design note: jemalloc gives freed pages back to the kernel as a side effect of later
// allocations, unless a thread of its own does it. An idle daemon holding many connections
// allocates almost nothing, so what a burst freed (the set-up of thousands of connections,
// their coroutine frames and replies) stayed resident for as long as the daemon stayed idle.
// With the background thread, freed pages go back after about a second (dirty_decay_ms) and
// straight to the kernel (muzzy_decay_ms 0: pages left to MADV_FREE count in RSS until the
// kernel needs them). Measured with bench/run idle, 10,000 connections: about 550 B less RSS
// per connection.

extern "C" {
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}
