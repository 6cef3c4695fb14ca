//! Builds the DPDK bindings: finds libdpdk (>= 22.11) with pkg-config, compiles the
//! C shim for DPDK's static-inline functions, and runs bindgen over csrc/wrapper.h.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running pkg-config {args:?}: {e}; install pkg-config and libdpdk-dev (dpdk-env/scripts/deps.sh)"));
    if !out.status.success() {
        panic!(
            "pkg-config {args:?} failed: {}; install libdpdk-dev >= 22.11 (dpdk-env/scripts/deps.sh)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8")
}

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    pkg_config(&["--atleast-version=22.11", "libdpdk"]);

    // The raw cflags carry `-include rte_config.h` and `-march=...`, which the pkg-config
    // crate would drop; DPDK's headers need both. We replace -march=native-like host
    // tuning with DPDK's own baseline so builds are portable between machines.
    let cflags: Vec<String> = pkg_config(&["--cflags", "libdpdk"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let mut build = cc::Build::new();
    build
        .file("csrc/shim.c")
        .include("csrc")
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("ws_dpdk_shim");

    // Shared linking: librte_eal loads the PMDs from the driver directory at init, so
    // the virtual devices (af_packet, af_xdp, memif, tap, ring, null) need no -d.
    for lib in [
        "rte_ethdev",
        "rte_mbuf",
        "rte_mempool",
        "rte_ring",
        "rte_eal",
        "rte_kvargs",
        "rte_net",
        "rte_bus_vdev",
    ] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    for flag in pkg_config(&["--libs-only-L", "libdpdk"]).split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .clang_arg("-Icsrc")
        .clang_macro_fallback()
        .allowlist_function("rte_.*|ws_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|rte_.*|RING_F_.*|SOCKET_ID_ANY")
        .opaque_type("rte_arp_ipv4|rte_arp_hdr|rte_l2tpv2_.*|rte_flow_item_l2tpv2")
        .no_debug("rte_gtp_psc_generic_hdr|rte_flow_item_gtp_psc")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen over the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("writing bindings.rs");
}
