use super::*;

fn norm(path: &str) -> Result<String, PathError> {
    let mut scratch = Vec::new();
    normalize(path.as_bytes(), &mut scratch).map(|p| String::from_utf8_lossy(p).into_owned())
}

/// Spellings that nginx serves as `/admin/`.
const ADMIN: &[&str] = &[
    "/admin/",
    "//admin/",
    "///admin//",
    "/./admin/",
    "/x/../admin/",
    "/x/./../admin/.",
    "/x/y/../../admin/",
    "/%61dmin/",
    "/adm%69n/",
    "/%61%64%6D%69%6E/",
    "/%2e/admin/",
    "/x/%2e%2e/admin/",
    "/x/.%2E/admin/",
    "/x/%2e./admin/",
    "/admin/.",
    "/admin/./",
    "/admin/x/..",
    "/admin/x/../",
    "/admin/#fragment",
    "/admin/#/../../public",
];

#[test]
fn spellings_of_admin() {
    for s in ADMIN {
        assert_eq!(norm(s).as_deref(), Ok("/admin/"), "{s}");
    }
}

#[test]
fn other_paths_stay_other_paths() {
    for (sent, normal) in [
        ("/Admin/", "/Admin/"),
        ("/admin;x/", "/admin;x/"),
        ("/admin\\", "/admin\\"),
        ("/\\admin/", "/\\admin/"),
        // Decoded once: `%25` is a `%`, never the start of another escape.
        ("/%2561dmin/", "/%61dmin/"),
        ("/%252e%252e/admin/", "/%2e%2e/admin/"),
        ("/admin.", "/admin."),
        ("/admin/...", "/admin/..."),
        ("/admin/..x", "/admin/..x"),
        ("/admin/.x", "/admin/.x"),
        ("/a%20b", "/a b"),
        ("/a%3Fb", "/a?b"),
        ("/a%23b", "/a#b"),
        ("/%C3%A9t%C3%A9", "/été"),
        ("/a/b/", "/a/b/"),
        ("/", "/"),
        ("//", "/"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("*", "*"),
    ] {
        assert_eq!(norm(sent).as_deref(), Ok(normal), "{sent}");
    }
}

#[test]
fn refused_with_400() {
    for (sent, e) in [
        ("/admin%2f", PathError::EncodedSlash),
        ("/admin%2F", PathError::EncodedSlash),
        ("/admin/..%2f", PathError::EncodedSlash),
        ("/a%00b", PathError::EncodedNul),
        ("/%zz", PathError::BadEscape),
        ("/%4", PathError::BadEscape),
        ("/%", PathError::BadEscape),
        ("/%g1", PathError::BadEscape),
        ("/..", PathError::AboveRoot),
        ("/../admin/", PathError::AboveRoot),
        ("/%2e%2e/admin/", PathError::AboveRoot),
        ("/x/../../admin/", PathError::AboveRoot),
        ("/x/%2E%2E/%2e%2e/admin/", PathError::AboveRoot),
        ("//../admin/", PathError::AboveRoot),
    ] {
        assert_eq!(norm(sent), Err(e), "{sent}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn normal_paths_are_borrowed() {
    let mut scratch = Vec::new();
    for p in ["/", "/a/b/c.png", "/a/", "/a/.hidden", "/a/b..c", "/x;y"] {
        let out = normalize(p.as_bytes(), &mut scratch).unwrap();
        assert_eq!(out.as_ptr(), p.as_ptr(), "{p} is not copied");
    }
    assert!(scratch.is_empty());
}

#[test]
fn segments_normal_spots_dot_and_empty_segments() {
    for p in ["/", "/a", "/a/", "/a/.b", "/a/..b", "/a/b."] {
        assert!(segments_normal(p.as_bytes()), "{p}");
    }
    for p in ["//", "/a//b", "/./a", "/a/.", "/a/../b", "/a/.."] {
        assert!(!segments_normal(p.as_bytes()), "{p}");
    }
}

/// A small deterministic generator (xorshift), so the property test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Paths from an alphabet rich in what normalisation looks at, plus arbitrary bytes.
#[test]
fn never_panics_and_output_is_normal() {
    const ALPHABET: &[&[u8]] = &[
        b"/", b"/", b".", b".", b"a", b"%", b"%2e", b"%2E", b"%2f", b"%00", b"%25", b"%61", b"#",
        b"%4", b"z", b"\xff", b"?", b";",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut scratch = Vec::new();
    let mut path = Vec::new();
    let mut accepted = 0;
    for _ in 0..200_000 {
        path.clear();
        path.push(b'/');
        let len = rng.next() % 12;
        for _ in 0..len {
            let r = rng.next();
            if r.is_multiple_of(8) {
                path.push((r >> 8) as u8);
            } else {
                path.extend_from_slice(ALPHABET[(r >> 8) as usize % ALPHABET.len()]);
            }
        }
        let Ok(out) = normalize(&path, &mut scratch) else {
            continue;
        };
        accepted += 1;
        let out = out.to_vec();
        assert_eq!(
            out.first(),
            Some(&b'/'),
            "{:?}",
            String::from_utf8_lossy(&path)
        );
        assert!(
            segments_normal(&out),
            "{:?} -> {:?}",
            String::from_utf8_lossy(&path),
            String::from_utf8_lossy(&out)
        );
        // Idempotent on what has no `%` or `#` left to decode.
        if !out.iter().any(|&b| b == b'%' || b == b'#') {
            assert_eq!(normalize(&out, &mut scratch).unwrap(), &out[..]);
        }
    }
    assert!(accepted > 10_000, "the generator reaches the normal paths");
}
