use serde_json::json;

use super::*;
use crate::http::{head_end, parse_request};

const EXAMPLE: &str = include_str!("../../../examples/testbed.json");

/// The example config with `rules` (and `default_pool`) replaced; pools are
/// images=0, apps=1, default=2.
fn config_with(
    rules: serde_json::Value,
    default_pool: Option<&str>,
) -> Result<Config, ConfigError> {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    v["rules"] = rules;
    match default_pool {
        Some(p) => v["default_pool"] = p.into(),
        None => {
            v.as_object_mut().unwrap().remove("default_pool");
        }
    }
    Config::from_json(&v.to_string())
}

fn router(rules: serde_json::Value) -> Router {
    Router::new(&config_with(rules, Some("default")).unwrap()).unwrap()
}

fn route(r: &Router, head: &str) -> PoolId {
    let head = head.as_bytes();
    let req = parse_request(&head[..head_end(head).unwrap()]).unwrap();
    r.route(&req).expect("a pool")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
}

const IMAGES: PoolId = 0;
const APPS: PoolId = 1;
const DEFAULT: PoolId = 2;

#[test]
fn the_example_rules() {
    let c = Config::from_json(EXAMPLE).unwrap();
    let r = Router::new(&c).unwrap();
    assert_eq!(r.default_pool(), DEFAULT);
    assert_eq!(route(&r, &get("/img/logo.svg")), IMAGES);
    assert_eq!(route(&r, &get("/x/photo.JPG")), IMAGES);
    assert_eq!(route(&r, &get("/app/run")), APPS);
    assert_eq!(route(&r, &get("/app/x.png")), IMAGES, "the first rule wins");
    assert_eq!(route(&r, &get("/")), DEFAULT);
    assert_eq!(
        route(&r, &get("/img")),
        DEFAULT,
        "prefix `/img/` needs the slash"
    );
    assert_eq!(route(&r, &get("/index.html")), DEFAULT);
}

#[test]
fn first_matching_rule_in_order_wins() {
    let r = router(json!([
        { "match": { "path_prefix": "/a/" }, "pool": "apps" },
        { "match": { "path_prefix": "/a/b/" }, "pool": "images" },
        { "match": { "path_regex": "^/a/b/c" }, "pool": "default" },
    ]));
    assert_eq!(route(&r, &get("/a/b/c")), APPS);
    let r = router(json!([
        { "match": { "path_regex": "^/a/b/c" }, "pool": "default" },
        { "match": { "path_prefix": "/a/b/" }, "pool": "images" },
        { "match": { "path_prefix": "/a/" }, "pool": "apps" },
    ]));
    assert_eq!(route(&r, &get("/a/b/c")), DEFAULT);
    assert_eq!(route(&r, &get("/a/b/d")), IMAGES);
    assert_eq!(route(&r, &get("/a/x")), APPS);
    let req_head = get("/a/b/d");
    let req = parse_request(req_head.as_bytes()).unwrap();
    assert_eq!(r.matching_rule(&req), Ok(Some(1)));
    let req_head = get("/z");
    let req = parse_request(req_head.as_bytes()).unwrap();
    assert_eq!(r.matching_rule(&req), Ok(None));
}

#[test]
fn several_regexes_in_one_set() {
    let r = router(json!([
        { "match": { "path_regex": "\\.php$" }, "pool": "apps" },
        { "match": { "path_regex": "^/static/" }, "pool": "images" },
        { "match": { "method": "POST", "path_regex": "^/static/upload" }, "pool": "apps" },
        { "match": { "path_regex": "(?i)/THUMB" }, "pool": "images" },
    ]));
    assert_eq!(route(&r, &get("/x/index.php")), APPS);
    assert_eq!(
        route(&r, &get("/x/index.php?a=b.png")),
        APPS,
        "regex sees the path without the query"
    );
    assert_eq!(route(&r, &get("/index.php5")), DEFAULT);
    assert_eq!(route(&r, &get("/static/a.css")), IMAGES);
    assert_eq!(route(&r, &get("/x/thumb/1")), IMAGES);
    assert_eq!(route(&r, &get("/?/static/")), DEFAULT);
    assert_eq!(
        route(
            &r,
            "POST /static/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        ),
        IMAGES,
        "rule 1 comes first"
    );
}

#[test]
fn conditions_are_anded() {
    let r = router(json!([
        { "match": {
            "method": "GET",
            "host": "Img.Example.com",
            "path_prefix": "/p/",
            "extensions": ["png"],
            "header": { "name": "accept", "value_regex": "image/" },
            "cookie": { "name": "tier", "value": "gold" }
          },
          "pool": "images" }
    ]));
    let full = "GET /p/a.png HTTP/1.1\r\nHost: img.example.COM:8080\r\nAccept: image/avif,image/webp\r\nCookie: x=1; tier=gold\r\n\r\n";
    assert_eq!(route(&r, full), IMAGES);
    // Each condition failing on its own sends the request to the default pool.
    for broken in [
        full.replace("GET", "HEAD"),
        full.replace("img.example.COM", "www.example.com"),
        full.replace("/p/", "/q/"),
        full.replace("a.png", "a.gif"),
        full.replace("Accept: image/avif,image/webp\r\n", "Accept: text/html\r\n"),
        full.replace("Accept: image/avif,image/webp\r\n", ""),
        full.replace("tier=gold", "tier=silver"),
        full.replace("tier=gold", "tiers=gold"),
    ] {
        assert_eq!(route(&r, &broken), DEFAULT, "{broken}");
    }
}

#[test]
fn extensions() {
    let r = router(json!([{ "match": { "extensions": ["png", "JPG"] }, "pool": "images" }]));
    assert_eq!(route(&r, &get("/a.png")), IMAGES);
    assert_eq!(route(&r, &get("/a.PNG")), IMAGES);
    assert_eq!(route(&r, &get("/dir/b.Jpg")), IMAGES);
    assert_eq!(route(&r, &get("/a.png?size=2")), IMAGES, "query ignored");
    assert_eq!(
        route(&r, &get("/a.html?img=x.png")),
        DEFAULT,
        "query ignored"
    );
    assert_eq!(route(&r, &get("/a.png/")), DEFAULT, "last segment only");
    assert_eq!(route(&r, &get("/x.png/a")), DEFAULT);
    assert_eq!(route(&r, &get("/apng")), DEFAULT);
    assert_eq!(route(&r, &get("/a.tar.png")), IMAGES);
    assert_eq!(route(&r, &get("/a.png.gz")), DEFAULT);
    assert_eq!(
        route(&r, "GET http://h/a.png?q HTTP/1.1\r\nHost: h\r\n\r\n"),
        IMAGES,
        "absolute-form target"
    );
}

#[test]
fn host_method_header_cookie() {
    let r = router(json!([
        { "match": { "host": "api.example.com" }, "pool": "apps" },
        { "match": { "method": "DELETE" }, "pool": "apps" },
        { "match": { "header": { "name": "X-Mobile" } }, "pool": "images" },
        { "match": { "cookie": { "name": "beta" } }, "pool": "images" },
    ]));
    let h = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    assert_eq!(route(&r, &h("api.example.com")), APPS);
    assert_eq!(route(&r, &h("API.example.com:443")), APPS);
    assert_eq!(route(&r, &h("api.example.com.evil")), DEFAULT);
    assert_eq!(route(&r, "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"), APPS);
    assert_eq!(
        route(&r, "delete /x HTTP/1.1\r\nHost: a\r\n\r\n"),
        DEFAULT,
        "methods are case-sensitive"
    );
    assert_eq!(
        route(&r, "GET / HTTP/1.1\r\nHost: a\r\nx-mobile: 1\r\n\r\n"),
        IMAGES
    );
    assert_eq!(
        route(&r, "GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=\r\n\r\n"),
        IMAGES
    );
    assert_eq!(
        route(&r, "GET / HTTP/1.1\r\nHost: a\r\nCookie: Beta=1\r\n\r\n"),
        DEFAULT
    );
    assert_eq!(route(&r, "GET / HTTP/1.0\r\n\r\n"), DEFAULT, "no host");
}

#[test]
fn header_regex_checks_every_value() {
    let r = router(json!([
        { "match": { "header": { "name": "x-tag", "value_regex": "^b$" } }, "pool": "apps" },
    ]));
    assert_eq!(
        route(
            &r,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Tag: a\r\nX-Tag: b\r\n\r\n"
        ),
        APPS
    );
    assert_eq!(
        route(&r, "GET / HTTP/1.1\r\nHost: a\r\nX-Tag: ab\r\n\r\n"),
        DEFAULT
    );
}

#[test]
fn empty_match_is_a_catch_all_and_can_replace_default_pool() {
    let c = config_with(
        json!([
            { "match": { "path_prefix": "/app/" }, "pool": "apps" },
            { "pool": "images" },
            { "match": {}, "pool": "apps" },
        ]),
        None,
    )
    .unwrap();
    let r = Router::new(&c).unwrap();
    assert_eq!(route(&r, &get("/app/")), APPS);
    assert_eq!(route(&r, &get("/other")), IMAGES);
    // No rules at all: everything to the default pool.
    let r = router(json!([]));
    assert_eq!(route(&r, &get("/img/a.png")), DEFAULT);
}

#[test]
fn errors_name_the_field() {
    let e = config_with(
        json!([{ "match": { "path_regex": "(" }, "pool": "apps" }]),
        Some("default"),
    )
    .unwrap_err();
    assert_eq!(e.field, "rules[0].match.path_regex");
    assert!(e.message.contains("regular expression"), "{e}");
    let e = config_with(
        json!([
            { "match": { "path_prefix": "/a" }, "pool": "apps" },
            { "match": { "path_prefix": "/b" }, "pool": "apps" },
            { "match": { "path_prefix": "/c" }, "pool": "nope" },
        ]),
        Some("default"),
    )
    .unwrap_err();
    assert_eq!(e.field, "rules[2].pool");
    assert!(e.message.contains("nope"), "{e}");
    let cases = [
        (
            json!({ "path_prefix": "img/" }),
            "rules[0].match.path_prefix",
        ),
        (
            json!({ "path_prefix": "/a/../b/" }),
            "rules[0].match.path_prefix",
        ),
        (
            json!({ "path_prefix": "//b/" }),
            "rules[0].match.path_prefix",
        ),
        (json!({ "extensions": [] }), "rules[0].match.extensions"),
        (
            json!({ "extensions": ["png", ".jpg"] }),
            "rules[0].match.extensions[1]",
        ),
        (json!({ "host": "a.com:80" }), "rules[0].match.host"),
        (json!({ "method": "GE T" }), "rules[0].match.method"),
        (
            json!({ "header": { "name": "X Y" } }),
            "rules[0].match.header.name",
        ),
        (
            json!({ "header": { "name": "x", "value_regex": "[a-" } }),
            "rules[0].match.header.value_regex",
        ),
        (
            json!({ "cookie": { "name": "a;b" } }),
            "rules[0].match.cookie.name",
        ),
        (
            json!({ "cookie": { "name": "a", "value": "x y" } }),
            "rules[0].match.cookie.value",
        ),
        (json!({ "paht_prefix": "/" }), "rules[0].match.paht_prefix"),
    ];
    for (m, field) in cases {
        let e = config_with(json!([{ "match": m, "pool": "apps" }]), Some("default")).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
    let e = config_with(
        json!([{ "match": { "path_prefix": "/a" }, "pool": "apps" }]),
        None,
    )
    .unwrap_err();
    assert_eq!(e.field, "default_pool");
    let e = config_with(json!([]), Some("nothere")).unwrap_err();
    assert_eq!(e.field, "default_pool");
    let e = config_with(
        json!([{ "name": "x", "pool": "apps" }, { "name": "x", "pool": "apps" }]),
        None,
    )
    .unwrap_err();
    assert_eq!(e.field, "rules[1].name");
}

#[test]
fn a_clone_routes_the_same_on_another_thread() {
    let r = router(json!([
        { "match": { "path_regex": "^/a" }, "pool": "apps" },
        { "match": { "header": { "name": "x", "value_regex": "y" } }, "pool": "images" },
    ]));
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        (
            route(&r2, &get("/abc")),
            route(&r2, "GET / HTTP/1.1\r\nHost: a\r\nX: yy\r\n\r\n"),
        )
    });
    assert_eq!(t.join().unwrap(), (APPS, IMAGES));
    assert_eq!(route(&r, &get("/abc")), APPS);
}

#[test]
fn many_regex_rules() {
    let rules: Vec<_> = (0..300)
        .map(|i| json!({ "match": { "path_regex": format!("^/r{i}/") }, "pool": "apps" }))
        .chain([json!({ "match": { "path_regex": "^/last/" }, "pool": "images" })])
        .collect();
    let r = router(serde_json::Value::Array(rules));
    assert_eq!(route(&r, &get("/r299/x")), APPS);
    assert_eq!(route(&r, &get("/last/x")), IMAGES);
    assert_eq!(route(&r, &get("/r300/x")), DEFAULT);
}

/// What `decide` does with the request line `GET {target}`: the rule's index, or the
/// status of the switch's answer for an `Error`.
fn decided(r: &Router, target: &str) -> Result<Option<usize>, u16> {
    let head = get(target);
    let req = parse_request(head.as_bytes()).expect("the head parses");
    match r.decide(&req) {
        (_, Action::Error(status)) => Err(*status),
        (rule, _) => Ok(rule),
    }
}

/// A deny of `/admin/`, then pools by extension and regex: the access-control rule
/// of issue 14, over the spellings nginx serves as `/admin/...`.
fn deny_admin() -> Router {
    router(json!([
        { "match": { "path_prefix": "/admin/" }, "action": { "deny": {} } },
        { "match": { "extensions": ["png"] }, "pool": "images" },
        { "match": { "path_regex": "^/app/[a-z]+$" }, "pool": "apps" },
    ]))
}

#[test]
fn deny_holds_on_every_spelling() {
    let r = deny_admin();
    for target in [
        "/admin/",
        "/admin/secret",
        "//admin/",
        "/./admin/",
        "/x/../admin/",
        "/x/./../admin/.",
        "/%61dmin/",
        "/adm%69n/",
        "/%61%64%6d%69%6e/x",
        "/x/%2e%2e/admin/",
        "/x/.%2e/admin/",
        "/admin/./",
        "/admin/x/..",
        "/admin//secret",
        "/admin/x.png",
        "/admin/%2e/x.png",
        "/admin/#/../../public",
        "http://www.example.com/x/../admin/",
        "http://www.example.com//admin/?q=/public/",
    ] {
        assert_eq!(decided(&r, target), Ok(Some(0)), "{target}");
    }
}

#[test]
fn other_paths_pass_the_deny() {
    let r = deny_admin();
    for target in [
        "/Admin/",
        "/admin",
        "/admin;x/",
        "/%2561dmin/",
        "/public/?/admin/",
        "/public/?x=/../admin/",
        "/x/..admin/",
    ] {
        assert_ne!(decided(&r, target), Ok(Some(0)), "{target}");
        assert!(decided(&r, target).is_ok(), "{target}");
    }
}

#[test]
fn paths_that_cannot_be_normalised_get_400() {
    let r = deny_admin();
    for target in [
        "/admin%2f",
        "/admin/..%2f",
        "/%2e%2e/admin/",
        "/../admin/",
        "/x/../../admin/",
        "/a%00",
        "/%zz",
        "/admin/%4",
        "/public/%",
    ] {
        assert_eq!(decided(&r, target), Err(400), "{target}");
    }
    // `route` has no pool to give it either.
    let head = get("/%zz");
    assert_eq!(r.route(&parse_request(head.as_bytes()).unwrap()), None);
}

#[test]
fn extensions_and_regexes_see_the_normalised_path() {
    let r = deny_admin();
    assert_eq!(decided(&r, "/img/a.p%6Eg"), Ok(Some(1)));
    assert_eq!(decided(&r, "/img/x/../a.png"), Ok(Some(1)));
    assert_eq!(
        decided(&r, "/img/a.png/."),
        Ok(None),
        "`/img/a.png/` has no extension"
    );
    assert_eq!(decided(&r, "/app//x"), Ok(Some(2)));
    assert_eq!(decided(&r, "/img/../app/%78"), Ok(Some(2)));
    assert_eq!(
        decided(&r, "/app/x?y"),
        Ok(Some(2)),
        "the query is not the path"
    );
    assert_eq!(
        decided(&r, "/app/x%3Fy"),
        Ok(None),
        "an encoded `?` is path"
    );
}
