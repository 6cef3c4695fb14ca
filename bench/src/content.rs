//! What a URL implies: the size and bytes of the response body (and of a request body),
//! derived deterministically so the server side can generate them and the client side
//! can check them byte by byte without either keeping a copy.
//!
//! The client names objects `o-<size>-<seed hex>` in the last path segment
//! (`/img/o-1024-1f.png`, `/app/o-1024-1f`, `/o-1024-1f`); any other path gets a size
//! and seed from a hash of the path, so every URL has exactly one right answer.

/// The splitmix64 finaliser: a good 64-bit mix, used as the byte generator.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (splitmix64 stepping).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Size and seed of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySpec {
    pub size: u64,
    pub seed: u64,
}

/// Largest body a hashed (not explicitly sized) path gets.
pub const HASHED_MAX: u64 = 4096;
/// The salt that makes a request body's bytes differ from its response's.
pub const REQUEST_SALT: u64 = 0x5245_5155_4553_5421;

/// FNV-1a over the bytes.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The body a request target implies (the query string is ignored).
pub fn body_for_target(target: &[u8]) -> BodySpec {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    let last = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    };
    if let Some(spec) = parse_object_name(last) {
        return spec;
    }
    let h = fnv1a(path);
    BodySpec {
        size: h % (HASHED_MAX + 1),
        seed: splitmix64(h),
    }
}

/// `o-<decimal size>-<hex seed>` optionally followed by `.ext`.
fn parse_object_name(name: &[u8]) -> Option<BodySpec> {
    let rest = name.strip_prefix(b"o-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (size_s, seed_s) = (&rest[..dash], &rest[dash + 1..]);
    let seed_s = match seed_s.iter().position(|&b| b == b'.') {
        Some(dot) => &seed_s[..dot],
        None => seed_s,
    };
    if size_s.is_empty() || size_s.len() > 12 || seed_s.is_empty() || seed_s.len() > 16 {
        return None;
    }
    let size = std::str::from_utf8(size_s).ok()?.parse::<u64>().ok()?;
    if !size_s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seed = u64::from_str_radix(std::str::from_utf8(seed_s).ok()?, 16).ok()?;
    Some(BodySpec { size, seed })
}

/// The 8 body bytes of block `block` (offsets `8*block .. 8*block+8`).
#[inline]
fn block(seed: u64, block: u64) -> [u8; 8] {
    splitmix64(seed ^ block.wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes()
}

/// Writes the body bytes at `offset..offset+out.len()`.
pub fn fill_body(seed: u64, offset: u64, out: &mut [u8]) {
    let mut off = offset;
    let mut i = 0;
    while i < out.len() {
        let b = block(seed, off >> 3);
        let start = (off & 7) as usize;
        let n = (8 - start).min(out.len() - i);
        out[i..i + n].copy_from_slice(&b[start..start + n]);
        i += n;
        off += n as u64;
    }
}

/// Whether `data` equals the body bytes at `offset..`.
pub fn check_body(seed: u64, offset: u64, data: &[u8]) -> bool {
    let mut off = offset;
    let mut i = 0;
    while i < data.len() {
        let b = block(seed, off >> 3);
        let start = (off & 7) as usize;
        let n = (8 - start).min(data.len() - i);
        if data[i..i + n] != b[start..start + n] {
            return false;
        }
        i += n;
        off += n as u64;
    }
    true
}

/// The URL classes of the request mix, each aimed at one of the example config's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlClass {
    /// `/img/o-S-K.png`: the `images` pool (by path prefix and by extension).
    Img,
    /// `/app/o-S-K`: the `apps` pool.
    App,
    /// `/o-S-K`: the default pool.
    Other,
}

impl UrlClass {
    pub const ALL: [UrlClass; 3] = [UrlClass::Img, UrlClass::App, UrlClass::Other];

    /// Position in [`UrlClass::ALL`].
    pub fn index(self) -> usize {
        match self {
            UrlClass::Img => 0,
            UrlClass::App => 1,
            UrlClass::Other => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UrlClass::Img => "img",
            UrlClass::App => "app",
            UrlClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<UrlClass> {
        UrlClass::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Appends the request target for a body of `spec` to `out`.
    pub fn write_target(self, spec: BodySpec, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = match self {
            UrlClass::Img => write!(out, "/img/o-{}-{:x}.png", spec.size, spec.seed),
            UrlClass::App => write!(out, "/app/o-{}-{:x}", spec.size, spec.seed),
            UrlClass::Other => write!(out, "/o-{}-{:x}", spec.size, spec.seed),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip_for_every_class() {
        for class in UrlClass::ALL {
            let spec = BodySpec {
                size: 123_456,
                seed: 0xdead_beef_0123,
            };
            let mut t = Vec::new();
            class.write_target(spec, &mut t);
            assert_eq!(body_for_target(&t), spec, "{}", String::from_utf8_lossy(&t));
            t.extend_from_slice(b"?x=1");
            assert_eq!(body_for_target(&t), spec);
        }
    }

    #[test]
    fn other_paths_hash_to_a_bounded_size() {
        let a = body_for_target(b"/index.html");
        assert_eq!(a, body_for_target(b"/index.html?q"));
        assert!(a.size <= HASHED_MAX);
        assert_ne!(a, body_for_target(b"/index.htm"));
        // malformed object names fall back to the hash
        assert!(body_for_target(b"/o-12x-ff").size <= HASHED_MAX);
        assert!(body_for_target(b"/o--ff").size <= HASHED_MAX);
    }

    #[test]
    fn fill_and_check_agree_at_any_split() {
        let seed = 42;
        let mut whole = vec![0u8; 1000];
        fill_body(seed, 0, &mut whole);
        for split in [0usize, 1, 7, 8, 9, 500, 999] {
            let mut part = vec![0u8; 1000 - split];
            fill_body(seed, split as u64, &mut part);
            assert_eq!(part, whole[split..]);
            assert!(check_body(seed, split as u64, &whole[split..]));
        }
        let mut bad = whole.clone();
        bad[777] ^= 1;
        assert!(!check_body(seed, 0, &bad));
        assert!(!check_body(seed + 1, 0, &whole));
    }

    #[test]
    fn rng_below_is_in_range() {
        let mut r = Rng(1);
        for n in [1u64, 2, 3, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
    }
}
