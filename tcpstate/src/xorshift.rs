//! Deterministic xorshift64 for generated test cases: the tests need no `rand` and
//! always see the same cases.
pub struct XorShift(pub u64);

impl XorShift {
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// As `below`, over u64 spans (times far ahead).
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
