//! Content rules compiled once into a [`Router`]: `route` picks the pool of the first
//! rule (in config order) whose conditions all hold, else the default pool.
//!
//! Path conditions (`path_prefix`, `path_regex`, `extensions`) look at the path as the
//! backend will serve it, normalised by [`crate::path::normalize`] (decoded, dot
//! segments removed, slashes merged), so that a `deny` holds against every spelling of
//! the denied path. A path that cannot be normalised is answered 400 whatever the
//! rules say (`Action::Error`).
//!
//! The `path_regex` patterns of all rules form one regex set, searched at most once
//! per request (and only if a rule with a regex is reached with its other conditions
//! holding), so one pass over the path finds every regex that matches. Header value
//! regexes are compiled once too. Routing allocates nothing: the set's match buffer and
//! the buffer a path is normalised into are per-thread scratch reused across requests.
//!
//! Performance note: regexes keep per-thread search caches; the first thread to use a
//! `Router` gets a lock-free fast path, others share a small pool. Give each worker
//! core its own `Router` (build one per core, or `clone` one: a clone has fresh caches).
use std::cell::RefCell;

use regex_automata::{
    meta, nfa::thompson::WhichCaptures, util::syntax, Input, MatchKind, PatternID, PatternSet,
};

use crate::answer::Action;
use crate::config::{Config, ConfigError, RuleConfig, RuleMatch};
use crate::http::{strip_port, RequestHead};
use crate::path::{with_normalized, PathError};

/// A pool, as its index in `Config::pools`.
pub type PoolId = usize;

/// Size limit of one compiled regex (and of the path set), as the `regex` crate's
/// default.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    method: Option<Box<str>>,
    path_prefix: Option<Box<[u8]>>,
    /// The rule's pattern in the path set.
    path_pattern: Option<PatternID>,
    /// Lower-case, without the dot.
    extensions: Box<[Box<[u8]>]>,
    /// Lower-case, without a port.
    host: Option<Box<[u8]>>,
    header: Option<(Box<str>, Option<regex::bytes::Regex>)>,
    cookie: Option<(Box<str>, Option<Box<str>>)>,
}

/// The compiled rules of one config.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Box<[Rule]>,
    /// The rules' path regexes, one pattern each, in rule order.
    paths: Option<meta::Regex>,
    fallback: PoolId,
    /// `Action::Pool(fallback)`.
    default_action: Action,
    /// `Action::Error(400)`: what a path that cannot be normalised gets.
    bad_path: Action,
}

thread_local! {
    static PATH_MATCHES: RefCell<PatternSet> = RefCell::new(PatternSet::new(0));
}

fn compile(field: String, pattern: &str) -> Result<regex::bytes::Regex, ConfigError> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| ConfigError::new(field, format!("not a valid regular expression: {e}")))
}

/// Whether `s` could be a (lower- or upper-case) host name or address literal.
fn valid_rule_host(s: &str) -> bool {
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    match inner {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
        }
    }
}

fn compile_rule(
    config: &Config,
    i: usize,
    r: &RuleConfig,
    patterns: &mut Vec<String>,
) -> Result<Rule, ConfigError> {
    let f = |s: &str| format!("rules[{i}].match.{s}");
    let m: &RuleMatch = &r.matches;
    let action = match (&r.pool, &r.action) {
        (Some(name), None) => Action::Pool(config.pool_index(name).ok_or_else(|| {
            ConfigError::new(
                format!("rules[{i}].pool"),
                format!("no pool is named `{name}`"),
            )
        })?),
        (None, Some(a)) => {
            a.validate(&format!("rules[{i}].action"))?;
            Action::compile(a)
        }
        _ => return Err(ConfigError::new(
            format!("rules[{i}].pool"),
            "give exactly one of `pool` (send to a pool) and `action` (deny, redirect, respond)",
        )),
    };
    if let Some(p) = &m.path_prefix {
        if !p.starts_with('/') {
            return Err(ConfigError::new(
                f("path_prefix"),
                format!("`{p}` must start with `/`"),
            ));
        }
        if p.contains("//") || p.contains("/./") || p.contains("/../") {
            return Err(ConfigError::new(
                f("path_prefix"),
                format!(
                    "`{p}` can never match: paths are matched normalised (no `//`, `/./` or `/../`)"
                ),
            ));
        }
    }
    let path_pattern = match &m.path_regex {
        Some(re) => {
            compile(f("path_regex"), re)?;
            patterns.push(re.clone());
            Some(PatternID::must(patterns.len() - 1))
        }
        None => None,
    };
    let mut extensions = Vec::new();
    if let Some(exts) = &m.extensions {
        if exts.is_empty() {
            return Err(ConfigError::new(
                f("extensions"),
                "list at least one extension (or leave the field out)",
            ));
        }
        for (j, e) in exts.iter().enumerate() {
            let ok = !e.is_empty()
                && e.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"./?#;".contains(&b));
            if !ok {
                return Err(ConfigError::new(
                    format!("rules[{i}].match.extensions[{j}]"),
                    format!("`{e}` is not an extension: write it without the dot, e.g. `png`"),
                ));
            }
            extensions.push(e.to_ascii_lowercase().into_bytes().into_boxed_slice());
        }
    }
    if let Some(h) = &m.host {
        if !valid_rule_host(h) {
            return Err(ConfigError::new(
                f("host"),
                format!("`{h}` is not a host name or address (write it without a port)"),
            ));
        }
    }
    if let Some(meth) = &m.method {
        if !crate::config::routing::is_token(meth) {
            return Err(ConfigError::new(
                f("method"),
                format!("`{meth}` is not an HTTP method"),
            ));
        }
    }
    let header = match &m.header {
        Some(h) => {
            if !crate::config::routing::is_token(&h.name) {
                return Err(ConfigError::new(
                    f("header.name"),
                    format!("`{}` is not a header name", h.name),
                ));
            }
            let re = match &h.value_regex {
                Some(p) => Some(compile(f("header.value_regex"), p)?),
                None => None,
            };
            Some((h.name.clone().into_boxed_str(), re))
        }
        None => None,
    };
    let cookie = match &m.cookie {
        Some(c) => {
            if !crate::config::routing::is_token(&c.name) {
                return Err(ConfigError::new(
                    f("cookie.name"),
                    format!("`{}` is not a cookie name", c.name),
                ));
            }
            if let Some(v) = &c.value {
                if v.chars()
                    .any(|ch| ch == ';' || ch.is_whitespace() || ch.is_control())
                {
                    return Err(ConfigError::new(
                        f("cookie.value"),
                        "a cookie value has no `;`, whitespace or control characters",
                    ));
                }
            }
            Some((
                c.name.clone().into_boxed_str(),
                c.value.clone().map(String::into_boxed_str),
            ))
        }
        None => None,
    };
    Ok(Rule {
        action,
        method: m.method.clone().map(String::into_boxed_str),
        path_prefix: m
            .path_prefix
            .clone()
            .map(|p| p.into_bytes().into_boxed_slice()),
        path_pattern,
        extensions: extensions.into_boxed_slice(),
        host: m
            .host
            .as_ref()
            .map(|h| h.to_ascii_lowercase().into_bytes().into_boxed_slice()),
        header,
        cookie,
    })
}

/// The extension of the last segment of `path` (no query), if it has one.
fn extension(path: &[u8]) -> Option<&[u8]> {
    let seg = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let dot = seg.iter().rposition(|&b| b == b'.')?;
    Some(&seg[dot + 1..])
}

impl Rule {
    /// The conditions that need no regex search of the path.
    fn cheap_match(&self, req: &RequestHead<'_>, path: &[u8]) -> bool {
        if let Some(m) = &self.method {
            if req.method != &**m {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p) {
                return false;
            }
        }
        if !self.extensions.is_empty() {
            let Some(ext) = extension(path) else {
                return false;
            };
            if !self.extensions.iter().any(|e| ext.eq_ignore_ascii_case(e)) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            match req.host {
                Some(rh) if strip_port(rh).as_bytes().eq_ignore_ascii_case(h) => {}
                _ => return false,
            }
        }
        if let Some((name, value)) = &self.cookie {
            match req.cookie(name) {
                Some(v) if value.as_deref().is_none_or(|want| want == v) => {}
                _ => return false,
            }
        }
        true
    }

    fn header_match(&self, req: &RequestHead<'_>) -> bool {
        let Some((name, re)) = &self.header else {
            return true;
        };
        req.headers().iter().any(|h| {
            h.name.eq_ignore_ascii_case(name) && re.as_ref().is_none_or(|re| re.is_match(h.value))
        })
    }
}

impl Router {
    /// Compiles `config.rules` and resolves `config.default_pool`. Errors name the
    /// field (`rules[2].pool`, `rules[0].match.path_regex`, `default_pool`).
    pub fn new(config: &Config) -> Result<Router, ConfigError> {
        let mut patterns = Vec::new();
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut names = std::collections::HashSet::new();
        for (i, r) in config.rules.iter().enumerate() {
            if let Some(n) = &r.name {
                if n.is_empty() || !names.insert(n.as_str()) {
                    return Err(ConfigError::new(
                        format!("rules[{i}].name"),
                        format!("`{n}` is empty or used twice"),
                    ));
                }
            }
            rules.push(compile_rule(config, i, r, &mut patterns)?);
        }
        let catch_all = config.rules.iter().position(|r| r.matches.is_empty());
        let fallback = match (&config.default_pool, catch_all) {
            (Some(name), _) => config.pool_index(name).ok_or_else(|| {
                ConfigError::new("default_pool", format!("no pool is named `{name}`"))
            })?,
            (None, Some(k)) => match &rules[k].action {
                Action::Pool(p) => *p,
                _ => {
                    return Err(ConfigError::new(
                        "default_pool",
                        "required: the catch-all rule answers itself, but pools need a default",
                    ))
                }
            },
            (None, None) => {
                return Err(ConfigError::new(
                    "default_pool",
                    "required: a request that matches no rule needs a pool (name one of \
                     `pools`, or end `rules` with one whose `match` is empty)",
                ))
            }
        };
        let paths = if patterns.is_empty() {
            None
        } else {
            let re = meta::Regex::builder()
                .configure(
                    meta::Config::new()
                        .match_kind(MatchKind::All)
                        .utf8_empty(false)
                        .which_captures(WhichCaptures::None)
                        .nfa_size_limit(Some(REGEX_SIZE_LIMIT)),
                )
                .syntax(syntax::Config::new().utf8(false))
                .build_many(&patterns)
                .map_err(|e| {
                    ConfigError::new(
                        "rules",
                        format!("the `path_regex` patterns do not compile together: {e}"),
                    )
                })?;
            Some(re)
        };
        Ok(Router {
            rules: rules.into_boxed_slice(),
            paths,
            fallback,
            default_action: Action::Pool(fallback),
            bad_path: Action::Error(400),
        })
    }

    /// The pool for `req` (`None`: the matching rule answers itself; see `decide`).
    pub fn route(&self, req: &RequestHead<'_>) -> Option<PoolId> {
        match self.decide(req) {
            (_, Action::Pool(p)) => Some(*p),
            _ => None,
        }
    }

    /// The rule that decides `req` (its index in `Config::rules`, `None` for the
    /// default pool) and what to do: `(None, Action::Error(400))` when its path cannot
    /// be normalised.
    pub fn decide(&self, req: &RequestHead<'_>) -> (Option<usize>, &Action) {
        match self.matching_rule(req) {
            Ok(Some(i)) => (Some(i), &self.rules[i].action),
            Ok(None) => (None, &self.default_action),
            Err(_) => (None, &self.bad_path),
        }
    }

    /// The index in `Config::rules` of the rule that decides `req` (for access logs
    /// and per-rule counters); `None` when the default pool takes it. Paths are
    /// matched normalised; the error says why a path cannot be (answer 400).
    pub fn matching_rule(&self, req: &RequestHead<'_>) -> Result<Option<usize>, PathError> {
        with_normalized(req.path_only().as_bytes(), |path| {
            Ok(self.first_match(req, path?))
        })
    }

    /// The first rule that holds for `req` whose normalised path is `path`.
    fn first_match(&self, req: &RequestHead<'_>, path: &[u8]) -> Option<usize> {
        let mut searched = false;
        PATH_MATCHES.with(|cell| {
            let mut set = cell.borrow_mut();
            for (i, r) in self.rules.iter().enumerate() {
                if !r.cheap_match(req, path) {
                    continue;
                }
                if let Some(pid) = r.path_pattern {
                    let re = self.paths.as_ref().expect("a rule has a path pattern");
                    if !searched {
                        if set.capacity() < re.pattern_len() {
                            *set = PatternSet::new(re.pattern_len());
                        }
                        set.clear();
                        re.which_overlapping_matches(&Input::new(path), &mut set);
                        searched = true;
                    }
                    if !set.contains(pid) {
                        continue;
                    }
                }
                if r.header_match(req) {
                    return Some(i);
                }
            }
            None
        })
    }

    /// The pool a request goes to when no rule matches it.
    pub fn default_pool(&self) -> PoolId {
        self.fallback
    }
}

#[cfg(test)]
mod tests;
