//! Go-style boolean flags: every `bool` flag of the command tree accepts what
//! Go's `strconv.ParseBool` accepts (`--flag`, `--flag=1`, `--flag=False`, ...),
//! as cobra's flags do. Flags are declared as plain `bool` fields; [`apply`]
//! rewrites them once for the whole tree.

use clap::{Arg, ArgAction, Command};

/// The spellings `strconv.ParseBool` accepts, and their values.
pub const GO_BOOLS: [(&str, bool); 12] = [
    ("1", true),
    ("t", true),
    ("T", true),
    ("TRUE", true),
    ("true", true),
    ("True", true),
    ("0", false),
    ("f", false),
    ("F", false),
    ("FALSE", false),
    ("false", false),
    ("False", false),
];

/// Parses a boolean as Go's `strconv.ParseBool` does.
pub fn parse(s: &str) -> Result<bool, String> {
    GO_BOOLS
        .iter()
        .find(|(k, _)| *k == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("invalid boolean {s:?} (use true/false, 1/0, t/f)"))
}

/// One flag declared as a plain `bool` (clap's `SetTrue`) becomes a Go bool:
/// `--flag` is true, `--flag=VALUE` takes any [`GO_BOOLS`] spelling, the
/// declared default (false unless `default_value_t = true`) holds otherwise.
fn go_bool_arg(arg: Arg) -> Arg {
    if !matches!(arg.get_action(), ArgAction::SetTrue) {
        return arg;
    }
    let default = match arg.get_default_values() {
        [d] if d.to_str().and_then(|d| parse(d).ok()) == Some(true) => "true",
        _ => "false",
    };
    let id = arg.get_id().clone();
    // pflag lets a flag repeat, the last value winning
    arg.overrides_with(id)
        .action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value(default)
        .value_parser(clap::builder::ValueParser::new(parse))
        .hide_possible_values(true)
}

/// Applies [`go_bool_arg`] to every flag of `cmd` and its subcommands.
pub fn apply(cmd: Command) -> Command {
    let mut cmd = cmd.mut_args(go_bool_arg);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for n in names {
        cmd = cmd.mut_subcommand(n, apply);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_what_strconv_parse_bool_accepts() {
        for (s, want) in GO_BOOLS {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
        for bad in ["", "yes", "no", "on", "off", "tRUE", "2", " true", "FaLsE"] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn plain_bool_flags_become_go_bools() {
        #[derive(Debug, clap::Parser)]
        struct T {
            #[arg(long)]
            a: bool,
            #[arg(long, default_value_t = true)]
            b: bool,
            #[arg(short, action = ArgAction::Count)]
            v: u8,
        }
        use clap::{CommandFactory, FromArgMatches};
        let parse_t = |args: &[&str]| {
            let m = apply(T::command()).try_get_matches_from(args)?;
            T::from_arg_matches(&m)
        };
        type Want = Option<(bool, bool, u8)>;
        let cases: &[(&[&str], Want)] = &[
            (&["t"], Some((false, true, 0))),
            (&["t", "--a"], Some((true, true, 0))),
            (&["t", "--a=1", "--b=F"], Some((true, false, 0))),
            (&["t", "--a=True", "-vv"], Some((true, true, 2))),
            (&["t", "--b=0", "--b"], Some((false, true, 0))),
            (&["t", "--a=yes"], None),
            // require_equals: a following word is never taken as the value
            (&["t", "--a", "false"], None),
        ];
        for (args, want) in cases {
            let got = parse_t(args).ok().map(|t| (t.a, t.b, t.v));
            assert_eq!(got, *want, "{args:?}");
        }
    }
}
