//! Addresses as the kernel reads them: the sockaddr a call hands over (`script::Addr::encode`), checked and
//! split into a filesystem name or an abstract one (`unix_validate_addr`, `unix_mkname_bsd`).

use crate::script::{Errno, SockAddrBytes};

/// `AF_UNSPEC`.
pub const AF_UNSPEC: u16 = 0;
/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;
/// `sizeof(struct sockaddr_un)`.
pub const SOCKADDR_UN: u32 = 110;
/// `sizeof(struct sockaddr_storage)`: `move_addr_to_kernel` refuses longer addresses.
pub const SOCKADDR_STORAGE: u32 = 128;

/// What a valid address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A filesystem name: the sun_path bytes up to the first NUL.
    Bsd(&'a [u8]),
    /// An abstract name: every sun_path byte within the length (leading NUL included).
    Abstract(&'a [u8]),
}

/// rule `addr_len_over_sockaddr_un_is_einval` / `addr_needs_af_unix`: `unix_validate_addr` — the length must be
/// over 2 and at most sizeof(sockaddr_un), the family AF_UNIX; then rule `empty_or_nul_led_path_is_abstract`:
/// a sun_path starting with NUL is abstract.
pub fn validate(a: &SockAddrBytes) -> Result<Target<'_>, (&'static str, Errno)> {
    if a.len > SOCKADDR_STORAGE {
        return Err(("addr_len_over_sockaddr_storage_is_einval", Errno::EINVAL));
    }
    if a.len <= 2 {
        return Err(("addr_len_at_most_family_is_einval", Errno::EINVAL));
    }
    if a.len > SOCKADDR_UN {
        return Err(("addr_len_over_sockaddr_un_is_einval", Errno::EINVAL));
    }
    if a.family() != AF_UNIX {
        return Err(("addr_needs_af_unix", Errno::EINVAL));
    }
    let sp = a.sun_path();
    if sp.first() == Some(&0) {
        Ok(Target::Abstract(sp))
    } else {
        // `unix_mkname_bsd` terminates sun_path at the length, then takes strlen.
        let end = sp.iter().position(|&b| b == 0).unwrap_or(sp.len());
        Ok(Target::Bsd(&sp[..end]))
    }
}

/// bind's check before validation: length 2 with family AF_UNIX asks for autobind.
pub fn is_autobind_request(a: &SockAddrBytes) -> bool {
    a.len == 2 && a.family() == AF_UNIX
}

/// The sun_path of an autobind name: NUL and five lowercase hex digits.
pub fn auto_name(n: u32) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(format!("{:05x}", n & 0xfffff).as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::validate;
    use crate::script::{Addr, Errno};

    /// Both are EINVAL on the kernel (scenario 171); the rule that decides is the one a transcript names: a
    /// length the kernel's `move_addr_to_kernel` refuses (over 128) or one `unix_validate_addr` does (111–128).
    #[test]
    fn lengths_past_the_sockaddr_are_told_apart_by_their_rule() {
        let rule = |len: u32| {
            let a = Addr::Raw {
                family: None,
                path: Some(b"a.sock".to_vec()),
                len: Some(len),
            };
            validate(&a.encode().expect("a raw address")).map(|_| ())
        };
        let over_un: Result<(), _> = Err(("addr_len_over_sockaddr_un_is_einval", Errno::EINVAL));
        assert_eq!(rule(111), over_un);
        assert_eq!(rule(128), over_un);
        assert_eq!(
            rule(129),
            Err(("addr_len_over_sockaddr_storage_is_einval", Errno::EINVAL))
        );
        assert_eq!(rule(110), Ok(()));
    }
}
