// SPDX-License-Identifier: GPL-2.0-only
//! Which clang compiles the BPF object. build.rs runs `--version` on the
//! candidates and hands the choice to scx_cargo through BPF_CLANG; the
//! choice itself is made here, without running anything, so that host tests
//! can check it.

/// Oldest clang scx_cargo builds with: it compiles BPF with -mcpu=v4, which
/// clang 18 introduced, and refuses older ones.
pub const MIN_MAJOR: u32 = 18;

/// Tried in order when BPF_CLANG is unset: the system's default clang, then
/// the versioned one Debian and Ubuntu install side by side.
pub const CANDIDATES: [&str; 2] = ["clang", "clang-19"];

/// The Debian/Ubuntu package that installs the last candidate.
pub const DEBIAN_PACKAGE: &str = "clang-19";

/// What `<compiler> --version` printed, or why it could not be run.
pub type Probe = Result<String, String>;

/// The major version in `clang --version` output, e.g. 19 from
/// "Debian clang version 19.1.7 (3~deb12u1)".
pub fn parse_major(version_output: &str) -> Option<u32> {
    let rest = version_output
        .lines()
        .find_map(|l| l.split_once("clang version ").map(|(_, v)| v))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The first probed compiler that is clang >= [`MIN_MAJOR`], or an error
/// that says what each one was and what to do. `from_env` says the only
/// probe is the user's BPF_CLANG.
pub fn choose<'a>(probes: &[(&'a str, Probe)], from_env: bool) -> Result<&'a str, String> {
    let mut problems = Vec::new();
    for (name, probe) in probes {
        let problem = match probe {
            Err(why) => why.clone(),
            Ok(out) => match parse_major(out) {
                Some(major) if major >= MIN_MAJOR => return Ok(*name),
                Some(major) => format!("it is clang {major}, older than {MIN_MAJOR}"),
                None => "its --version output names no clang version".to_string(),
            },
        };
        problems.push(format!("{name}: {problem}"));
    }
    let problems = problems.join("; ");
    Err(if from_env {
        format!(
            "BPF_CLANG does not name a usable BPF compiler ({problems}). Point BPF_CLANG at \
             clang {MIN_MAJOR} or newer, or unset it to use {} from PATH",
            CANDIDATES.join(" or ")
        )
    } else {
        format!(
            "no clang {MIN_MAJOR} or newer to compile the BPF scheduler ({problems}). On \
             Debian or Ubuntu: `sudo apt install {DEBIAN_PACKAGE}` (or `./morpheus-dev setup`); \
             elsewhere install clang {MIN_MAJOR}+ or set BPF_CLANG to its path"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_19: &str = "Debian clang version 19.1.7 (3~deb12u1)\n\
                             Target: x86_64-pc-linux-gnu\nThread model: posix\n";
    const DEBIAN_14: &str = "Debian clang version 14.0.6\nTarget: x86_64-pc-linux-gnu\n";
    const UPSTREAM_20: &str = "clang version 20.1.8 (https://github.com/llvm/llvm-project abc)\n";

    fn ok(s: &str) -> Probe {
        Ok(s.to_string())
    }

    #[test]
    fn versions_are_read_from_every_vendor_format() {
        assert_eq!(parse_major(DEBIAN_19), Some(19));
        assert_eq!(parse_major(DEBIAN_14), Some(14));
        assert_eq!(parse_major(UPSTREAM_20), Some(20));
        assert_eq!(
            parse_major("Ubuntu clang version 18.1.3 (1ubuntu1)\nTarget: aarch64\n"),
            Some(18)
        );
        assert_eq!(
            parse_major("clang version 19.1.7 (Fedora 19.1.7-3.fc41)"),
            Some(19)
        );
        assert_eq!(parse_major("clang version 21.0.0git"), Some(21));
        assert_eq!(parse_major("gcc (Debian 12.2.0-14) 12.2.0\n"), None);
        assert_eq!(parse_major("clang version \n"), None);
        assert_eq!(parse_major(""), None);
    }

    #[test]
    fn default_clang_is_preferred_when_new_enough() {
        let probes = [("clang", ok(UPSTREAM_20)), ("clang-19", ok(DEBIAN_19))];
        assert_eq!(choose(&probes, false), Ok("clang"));
    }

    #[test]
    fn falls_back_past_a_missing_or_old_clang() {
        let missing = [
            (
                "clang",
                Err("cannot run it (No such file or directory)".into()),
            ),
            ("clang-19", ok(DEBIAN_19)),
        ];
        assert_eq!(choose(&missing, false), Ok("clang-19"));
        let old = [("clang", ok(DEBIAN_14)), ("clang-19", ok(DEBIAN_19))];
        assert_eq!(choose(&old, false), Ok("clang-19"));
        let not_clang = [("clang", ok("gcc 12")), ("clang-19", ok(DEBIAN_19))];
        assert_eq!(choose(&not_clang, false), Ok("clang-19"));
    }

    #[test]
    fn none_usable_says_what_each_was_and_what_to_install() {
        let probes = [
            ("clang", ok(DEBIAN_14)),
            (
                "clang-19",
                Err("cannot run it (No such file or directory)".into()),
            ),
        ];
        let e = choose(&probes, false).unwrap_err();
        assert!(e.contains("clang: it is clang 14, older than 18"), "{e}");
        assert!(e.contains("clang-19: cannot run it"), "{e}");
        assert!(e.contains("sudo apt install clang-19"), "{e}");
    }

    #[test]
    fn an_unusable_bpf_clang_is_not_replaced_silently() {
        let e = choose(&[("/nonexistent", Err("cannot run it".into()))], true).unwrap_err();
        assert!(e.starts_with("BPF_CLANG does not name"), "{e}");
        assert!(e.contains("/nonexistent: cannot run it"), "{e}");
        assert!(e.contains("unset it"), "{e}");
        let e = choose(&[("clang-17", ok("clang version 17.0.6"))], true).unwrap_err();
        assert!(e.contains("clang-17: it is clang 17, older than 18"), "{e}");
        assert_eq!(choose(&[("clang-19", ok(DEBIAN_19))], true), Ok("clang-19"));
    }
}
