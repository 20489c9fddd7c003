//! The ICE host candidates sluice offers: what `rtc_server.candidate` names (IPs, `*` for this
//! host's address, `$NAME` for an environment variable, as SRS's `candidate`), or a request's
//! `?eip=` override, each with the WebRTC port.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// What `rtc_server.candidate` says, parsed once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSpec {
    /// These addresses.
    Ips(Vec<IpAddr>),
    /// This host's address (`*`).
    Auto,
    /// The addresses in an environment variable (`$CANDIDATE`), read when a session starts.
    Env(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CandidateError {
    #[error("empty: give an IP address, \"*\" or \"$VARIABLE\"")]
    Empty,
    #[error("{0:?} is not an IP address")]
    NotAnIp(String),
    #[error("{0:?} is not an environment variable name")]
    BadVariable(String),
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// Parses a candidate setting: `*`, `$NAME`, or IP addresses separated by commas or spaces.
pub fn parse_spec(spec: &str) -> Result<CandidateSpec, CandidateError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(CandidateError::Empty);
    }
    if spec == "*" {
        return Ok(CandidateSpec::Auto);
    }
    if let Some(name) = spec.strip_prefix('$') {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return if valid {
            Ok(CandidateSpec::Env(name.to_string()))
        } else {
            Err(CandidateError::BadVariable(spec.to_string()))
        };
    }
    parse_ips(spec).map(CandidateSpec::Ips)
}

fn parse_ips(text: &str) -> Result<Vec<IpAddr>, CandidateError> {
    let ips = text
        .split([',', ' '])
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpAddr>()
                .map_err(|_| CandidateError::NotAnIp(part.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ips.is_empty() {
        return Err(CandidateError::Empty);
    }
    Ok(ips)
}

/// The candidate addresses for one session: `eip` (a request's `?eip=IP` or `IP:port`) when
/// given, else the setting's addresses, each with `port` unless `eip` names its own.
pub fn resolve(
    spec: &CandidateSpec,
    eip: Option<&str>,
    port: u16,
) -> Result<Vec<SocketAddr>, CandidateError> {
    if let Some(eip) = eip.filter(|e| !e.is_empty()) {
        if let Ok(addr) = eip.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        let ip = eip
            .parse::<IpAddr>()
            .map_err(|_| CandidateError::NotAnIp(eip.to_string()))?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let ips = match spec {
        CandidateSpec::Ips(ips) => ips.clone(),
        CandidateSpec::Env(name) => {
            let value = std::env::var(name).map_err(|_| CandidateError::Unset(name.clone()))?;
            parse_ips(&value)?
        }
        CandidateSpec::Auto => vec![host_address()],
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// This host's address as others reach it: the source address of the default route, found by
/// "connecting" a UDP socket (which sends nothing); loopback when there is no route.
fn host_address() -> IpAddr {
    let probe = UdpSocket::bind("0.0.0.0:0").and_then(|socket| {
        // TEST-NET-1 (RFC 5737): only the route lookup matters, no packet is sent.
        socket.connect("192.0.2.1:9")?;
        socket.local_addr()
    });
    match probe {
        Ok(addr) if !addr.ip().is_unspecified() => addr.ip(),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(parse_spec("*"), Ok(CandidateSpec::Auto));
        assert_eq!(
            parse_spec("$CANDIDATE"),
            Ok(CandidateSpec::Env("CANDIDATE".into()))
        );
        assert_eq!(
            parse_spec("127.0.0.1, ::1"),
            Ok(CandidateSpec::Ips(vec![
                IpAddr::from([127, 0, 0, 1]),
                "::1".parse().unwrap()
            ]))
        );
        assert_eq!(parse_spec(""), Err(CandidateError::Empty));
        assert_eq!(
            parse_spec("localhost"),
            Err(CandidateError::NotAnIp("localhost".into()))
        );
        assert_eq!(
            parse_spec("$BAD-NAME"),
            Err(CandidateError::BadVariable("$BAD-NAME".into()))
        );
    }

    #[test]
    fn eip_overrides_the_setting() {
        let spec = CandidateSpec::Ips(vec![IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(
            resolve(&spec, None, 8000).unwrap(),
            vec!["127.0.0.1:8000".parse().unwrap()]
        );
        assert_eq!(
            resolve(&spec, Some("127.0.0.2"), 8000).unwrap(),
            vec!["127.0.0.2:8000".parse().unwrap()]
        );
        assert_eq!(
            resolve(&spec, Some("127.0.0.3:18000"), 8000).unwrap(),
            vec!["127.0.0.3:18000".parse().unwrap()]
        );
        assert!(resolve(&spec, Some("nonsense"), 8000).is_err());
    }

    #[test]
    fn environment_variables_are_read_per_session() {
        let spec = CandidateSpec::Env("SLUICE_TEST_CANDIDATE_UNSET_XYZ".into());
        assert_eq!(
            resolve(&spec, None, 8000),
            Err(CandidateError::Unset(
                "SLUICE_TEST_CANDIDATE_UNSET_XYZ".into()
            ))
        );
    }
}
