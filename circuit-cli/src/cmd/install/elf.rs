//! Which machine a binary is for, read from its ELF header, and whether a host's `uname -m`
//! runs it: an install refuses to upload a circuitd the host cannot execute.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// A CPU family, as the ELF header names it and as `uname -m` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (`uname -m`: x86_64, amd64).
    X86_64,
    /// 32-bit x86 (i386 … i686).
    X86,
    /// 64-bit ARM (aarch64, arm64).
    Aarch64,
    /// 32-bit ARM (armv6l, armv7l, …).
    Arm,
    /// 64-bit RISC-V.
    Riscv64,
    /// 64-bit POWER, little-endian.
    Ppc64le,
    /// 64-bit POWER, big-endian.
    Ppc64,
    /// IBM Z.
    S390x,
    /// 64-bit LoongArch.
    Loongarch64,
}

impl Arch {
    /// The name `uname -m` prints for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::X86 => "i686",
            Self::Aarch64 => "aarch64",
            Self::Arm => "armv7l",
            Self::Riscv64 => "riscv64",
            Self::Ppc64le => "ppc64le",
            Self::Ppc64 => "ppc64",
            Self::S390x => "s390x",
            Self::Loongarch64 => "loongarch64",
        }
    }

    /// The family of a `uname -m` machine name; `None` for one we do not know.
    pub fn from_uname(machine: &str) -> Option<Self> {
        Some(match machine.trim() {
            "x86_64" | "amd64" => Self::X86_64,
            "i386" | "i486" | "i586" | "i686" | "x86" => Self::X86,
            "aarch64" | "arm64" | "aarch64_be" => Self::Aarch64,
            m if m.starts_with("armv") || m == "arm" => Self::Arm,
            "riscv64" => Self::Riscv64,
            "ppc64le" => Self::Ppc64le,
            "ppc64" => Self::Ppc64,
            "s390x" => Self::S390x,
            "loongarch64" => Self::Loongarch64,
            _ => return None,
        })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The architecture of the ELF executable at `path`, or why it is not one we can install.
pub fn arch_of(path: &Path) -> Result<Arch, String> {
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_header(&header)
        .map_err(|why| format!("{} is not a circuitd binary: {why}", path.display()))
}

/// Reads the class, byte order and `e_machine` of an ELF header's first 20 bytes.
fn parse_header(h: &[u8; 20]) -> Result<Arch, String> {
    if h[..4] != *b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    let (is_64, little) = (h[4] == 2, h[5] == 1);
    let machine = if little {
        u16::from_le_bytes([h[18], h[19]])
    } else {
        u16::from_be_bytes([h[18], h[19]])
    };
    Ok(match (machine, is_64) {
        (0x3e, true) => Arch::X86_64,
        (0x03, false) => Arch::X86,
        (0xb7, true) => Arch::Aarch64,
        (0x28, false) => Arch::Arm,
        (0xf3, true) => Arch::Riscv64,
        (0x15, true) if little => Arch::Ppc64le,
        (0x15, true) => Arch::Ppc64,
        (0x16, true) => Arch::S390x,
        (0x102, true) => Arch::Loongarch64,
        _ => {
            return Err(format!(
            "an ELF file for machine {machine:#x} ({}-bit), which circuit install does not know",
            if is_64 { 64 } else { 32 }
        ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: [u8; 2]) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        (h[4], h[5]) = (class, data);
        h[18..20].copy_from_slice(&machine);
        h
    }

    #[test]
    fn headers_name_their_machine() {
        assert_eq!(parse_header(&header(2, 1, [0x3e, 0])), Ok(Arch::X86_64));
        assert_eq!(parse_header(&header(2, 1, [0xb7, 0])), Ok(Arch::Aarch64));
        assert_eq!(parse_header(&header(1, 1, [0x28, 0])), Ok(Arch::Arm));
        assert_eq!(parse_header(&header(2, 1, [0x15, 0])), Ok(Arch::Ppc64le));
        assert_eq!(parse_header(&header(2, 2, [0, 0x15])), Ok(Arch::Ppc64));
        assert!(parse_header(&[b'#'; 20])
            .unwrap_err()
            .contains("not an ELF"));
        assert!(parse_header(&header(2, 1, [0x99, 0]))
            .unwrap_err()
            .contains("0x99"));
    }

    #[test]
    fn uname_names_map_to_families() {
        assert_eq!(Arch::from_uname("x86_64\n"), Some(Arch::X86_64));
        assert_eq!(Arch::from_uname("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_uname("armv7l"), Some(Arch::Arm));
        assert_eq!(Arch::from_uname("i686"), Some(Arch::X86));
        assert_eq!(Arch::from_uname("sparc64"), None);
    }

    #[test]
    fn the_running_test_binary_is_this_machines() {
        let me = std::env::current_exe().expect("current exe");
        let arch = arch_of(&me).expect("an ELF test binary");
        assert_eq!(
            arch.as_str(),
            Arch::from_uname(std::env::consts::ARCH).unwrap().as_str()
        );
    }
}
