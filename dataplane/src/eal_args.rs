//! EAL arguments from the config: lcores, main lcore, file prefix and one device
//! argument per port, after the operator's own `eal.args`.
use rules::Config;

pub fn eal_args(config: &Config) -> Vec<String> {
    let mut args = config.eal.args.clone();
    args.push("--lcores".into());
    args.push(config.lcores.eal_lcores());
    args.push("--main-lcore".into());
    args.push(config.lcores.main.to_string());
    args.push("--file-prefix".into());
    args.push(config.eal.file_prefix.clone());
    let any_pci = config.ports.iter().any(|p| p.is_pci());
    if !any_pci && !args.iter().any(|a| a == "--no-pci") {
        // Without it the EAL probes (and may grab) the machine's own NICs.
        args.push("--no-pci".into());
    }
    for p in &config.ports {
        args.push(if p.is_pci() {
            "-a".into()
        } else {
            "--vdev".into()
        });
        args.push(p.device.clone());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_args() {
        let c = Config::from_json(include_str!("../../examples/testbed-2workers.json")).unwrap();
        let a = eal_args(&c).join(" ");
        assert!(
            a.contains("--lcores 0@0,1@1,2@0 --main-lcore 0 --file-prefix webswitch"),
            "{a}"
        );
        assert!(
            a.contains("--vdev net_af_packet0,iface=sw-cli,qpairs=2"),
            "{a}"
        );
        assert_eq!(a.matches("--no-pci").count(), 1, "{a}");
    }
}
