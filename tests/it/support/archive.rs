//! Tar archives written header by header, for hostile and odd entries.

/// One entry of a hand-made tar archive: any name (bytes), type, mode, link target or content.
pub struct Raw<'a> {
    pub name: &'a [u8],
    pub kind: tar::EntryType,
    pub mode: u32,
    pub body: &'a [u8],
}

pub fn raw(name: &str, kind: tar::EntryType, mode: u32, body: &'static str) -> Raw<'static> {
    Raw { name: Box::leak(name.to_owned().into_boxed_str()).as_bytes(), kind, mode, body: body.as_bytes() }
}

/// A tar archive written header by header, so names and links can be what a hostile or an
/// odd archive has (the tar crate's builder refuses some).
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_mtime(1_700_000_000);
        let body: &[u8] = if e.kind == tar::EntryType::Regular { e.body } else { b"" };
        if matches!(e.kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            header.as_old_mut().linkname[..e.body.len()].copy_from_slice(e.body);
        }
        header.set_size(body.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
