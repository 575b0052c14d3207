//! The query's EDNS Client Subnet option, read from the wire: hickory
//! decodes ECS leniently (extra address bytes, bits beyond the prefix and a
//! scope in a query all pass), and RFC 7871 §6 asks a server to refuse
//! them, so the option's own bytes are judged by `edns_common`'s parser,
//! the one the kernel runs.

use edns_common::{parse_client_subnet, ClientSubnet, ECS_MAX, OPTION_ECS};
use hickory_proto::op::Query;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The client subnet of a query hickory has already parsed: `Ok(None)`
/// without an ECS option, `Err(())` when it is malformed or repeated.
pub fn client_subnet(query: &[u8]) -> Result<Option<ClientSubnet>, ()> {
    let Some(opt) = opt_rdata(query) else { return Ok(None) };
    let mut found = None;
    let mut rest = opt;
    while rest.len() >= 4 {
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let data = rest.get(4..4 + len).ok_or(())?;
        if code == OPTION_ECS {
            if found.is_some() || len > ECS_MAX {
                return Err(());
            }
            let mut buf = [0u8; ECS_MAX];
            buf[..len].copy_from_slice(data);
            found = Some(parse_client_subnet(&buf, len).ok_or(())?);
        }
        rest = &rest[4 + len..];
    }
    Ok(found)
}

/// The OPT record's RDATA, walking the sections with hickory's decoder.
fn opt_rdata(msg: &[u8]) -> Option<&[u8]> {
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    if msg.len() < 12 {
        return None;
    }
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut d = BinDecoder::new(msg);
    d.read_slice(12).ok()?;
    for _ in 0..qd {
        Query::read(&mut d).ok()?;
    }
    for _ in 0..an as u32 + ns as u32 {
        Record::read(&mut d).ok()?;
    }
    for _ in 0..ar {
        hickory_proto::rr::Name::read(&mut d).ok()?;
        let fixed = d.read_slice(10).ok()?.unverified();
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata = d.read_slice(rdlen).ok()?.unverified();
        if rtype == 41 {
            return Some(rdata);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for a.example A with an OPT holding `options`.
    fn query(options: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 7];
        m.extend_from_slice(b"example");
        m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 41, 4, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&(options.len() as u16).to_be_bytes());
        m.extend_from_slice(options);
        m
    }

    #[test]
    fn a_well_formed_subnet_is_read_beside_other_options() {
        let q = query(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
        let s = client_subnet(&q).unwrap().unwrap();
        assert_eq!((s.family, s.source), (1, 24));
        assert_eq!(s.addr, std::net::Ipv4Addr::new(192, 0, 2, 0).to_ipv6_mapped().octets());
        assert_eq!(client_subnet(&query(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])), Ok(None));
    }

    #[test]
    fn malformed_or_repeated_subnets_are_refused() {
        for bad in [
            &[0, 8, 0, 8, 0, 1, 24, 0, 192, 0, 2, 0][..], // an address byte too many
            &[0, 8, 0, 6, 0, 1, 24, 0, 192, 0],          // one too few
            &[0, 8, 0, 7, 0, 1, 23, 0, 192, 0, 3],       // a bit beyond the prefix
            &[0, 8, 0, 7, 0, 1, 24, 24, 192, 0, 2],      // a scope in a query
            &[0, 8, 0, 4, 0, 3, 0, 0],                   // unknown family
            &[0, 8, 0, 9, 0, 1, 33, 0, 1, 2, 3, 4, 5],   // longer than IPv4
            &[0, 8, 0, 4, 0, 1, 0, 0, 0, 8, 0, 4, 0, 1, 0, 0], // twice
        ] {
            assert_eq!(client_subnet(&query(bad)), Err(()), "{bad:?}");
        }
        let zero = client_subnet(&query(&[0, 8, 0, 4, 0, 2, 0, 0])).unwrap().unwrap();
        assert_eq!((zero.family, zero.source), (2, 0), "source prefix 0 is well formed");
    }
}
