//! Publish/play access rules by client address, with SRS's semantics: when a vhost's security
//! is enabled, a client is refused if any `deny` rule matches it, and otherwise allowed only if
//! some `allow` rule matches — no match means refused. Rules read as in SRS's config:
//! `"allow publish 127.0.0.1"`, `"deny play 10.0.0.0/8"`, `"allow play all"`.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Publish,
    Play,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Play => "play",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matcher {
    All,
    Net { network: IpAddr, prefix: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    action: Action,
    method: Method,
    matcher: Matcher,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("a rule is `allow|deny publish|play ADDRESS`, e.g. \"allow play 10.0.0.0/8\"")]
    Shape,
    #[error("{0:?} is not allow or deny")]
    Action(String),
    #[error("{0:?} is not publish or play")]
    Method(String),
    #[error("{0:?} is not an IP address, a CIDR block or `all`")]
    Address(String),
}

impl std::str::FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [action, method, address] = words[..] else {
            return Err(RuleError::Shape);
        };
        let action = match action {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            other => return Err(RuleError::Action(other.into())),
        };
        let method = match method {
            "publish" => Method::Publish,
            "play" => Method::Play,
            other => return Err(RuleError::Method(other.into())),
        };
        let matcher = if address == "all" {
            Matcher::All
        } else {
            let (ip, prefix) = match address.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (address, None),
            };
            let network: IpAddr = ip.parse().map_err(|_| RuleError::Address(address.into()))?;
            let max = if network.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| RuleError::Address(address.into()))?,
                None => max,
            };
            Matcher::Net { network, prefix }
        };
        Ok(Rule {
            action,
            method,
            matcher,
        })
    }
}

impl Rule {
    fn matches(&self, method: Method, ip: IpAddr) -> bool {
        self.method == method
            && match self.matcher {
                Matcher::All => true,
                Matcher::Net { network, prefix } => in_network(canonical(ip), network, prefix),
            }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Whether `ip` may `method` under `rules` (security enabled).
pub fn allows(rules: &[Rule], method: Method, ip: IpAddr) -> Result<(), String> {
    if let Some(rule) = rules
        .iter()
        .find(|r| r.action == Action::Deny && r.matches(method, ip))
    {
        return Err(format!("denied by rule {}", describe(rule)));
    }
    if rules
        .iter()
        .any(|r| r.action == Action::Allow && r.matches(method, ip))
    {
        return Ok(());
    }
    Err(format!("no rule allows {} from {ip}", method.name()))
}

fn describe(rule: &Rule) -> String {
    let action = match rule.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    let address = match rule.matcher {
        Matcher::All => "all".to_string(),
        Matcher::Net { network, prefix } => format!("{network}/{prefix}"),
    };
    format!("\"{action} {} {address}\"", rule.method.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn srs_semantics() {
        let r = rules(&[
            "allow publish 127.0.0.1",
            "allow play all",
            "deny play 10.0.0.0/8",
        ]);
        assert!(allows(&r, Method::Publish, ip("127.0.0.1")).is_ok());
        assert!(
            allows(&r, Method::Publish, ip("192.168.1.2")).is_err(),
            "default deny"
        );
        assert!(allows(&r, Method::Play, ip("192.168.1.2")).is_ok());
        let denied = allows(&r, Method::Play, ip("10.1.2.3")).unwrap_err();
        assert!(denied.contains("deny play 10.0.0.0/8"), "{denied}");
        assert!(
            allows(&[], Method::Play, ip("127.0.0.1")).is_err(),
            "no rules: deny"
        );
        // A dual-stack socket's mapped address matches IPv4 rules.
        assert!(allows(&r, Method::Publish, ip("::ffff:127.0.0.1")).is_ok());
        let v6 = rules(&["allow play 2001:db8::/32"]);
        assert!(allows(&v6, Method::Play, ip("2001:db8::1")).is_ok());
        assert!(allows(&v6, Method::Play, ip("2001:db9::1")).is_err());
    }

    #[test]
    fn bad_rules_say_why() {
        assert_eq!("allow publish".parse::<Rule>(), Err(RuleError::Shape));
        assert_eq!(
            "permit play all".parse::<Rule>(),
            Err(RuleError::Action("permit".into()))
        );
        assert_eq!(
            "allow view all".parse::<Rule>(),
            Err(RuleError::Method("view".into()))
        );
        assert_eq!(
            "allow play 10.0.0.0/33".parse::<Rule>(),
            Err(RuleError::Address("10.0.0.0/33".into()))
        );
        assert!("deny publish ::1/128".parse::<Rule>().is_ok());
    }
}
