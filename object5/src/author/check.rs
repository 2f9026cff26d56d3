//! The author's check of an envelope without a device (`package verify` with no device
//! options): authenticate it, check every digest the envelope itself can prove (severed
//! members, integrated payloads, dependencies, images given on the command line) and list the
//! conditions only a device can evaluate, instead of failing on them.
//!
//! It walks every command sequence statically (section 6.4: shared, then dependency
//! resolution, payload fetch, install, validate, load, invoke), entering every try-each branch
//! and run-sequence, with per-component parameters (section 8.4.8) and a model of what each
//! component holds after fetch, write, copy and swap. It never fails on a condition whose
//! input is on the device (vendor, class, slot, installed image); it fails on any digest that
//! does not match, with the [`SuitError`] a device would report.

use super::format_uuid;
use crate::manifest::cbor::{Reader, MAJOR_ARRAY, MAJOR_BSTR};
use crate::manifest::{
    apply, authenticate, cmd, component_set, parse_digest, sha256, ContentAlg, DecryptionKey,
    Decryptor, EncryptionInfo, Envelope, Params, Software, SuitError, TrustAnchor, SEVERABLE_KEYS,
};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// Deepest try-each / run-sequence nesting followed (as the device's interpreter).
const MAX_DEPTH: u8 = 8;
/// Deepest chain of integrated dependencies followed.
const MAX_DEPENDENCY_DEPTH: u8 = 3;

/// Manifest keys of the command sequences, in the order section 6.4 runs them.
const SEQUENCES: [(u64, &str); 6] = [
    (15, "dependency-resolution"),
    (16, "payload-fetch"),
    (20, "install"),
    (7, "validate"),
    (8, "load"),
    (9, "invoke"),
];

/// What the author supplies besides trust anchors.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions<'a> {
    /// Component 0's image as the device gets it: fetched from a URI (for a decrypting copy,
    /// the encrypted image it decrypts), or already installed.
    pub image: Option<&'a [u8]>,
    /// Component 1's image as the device gets it, for two-image packages (as `image`).
    pub second_image: Option<&'a [u8]>,
    /// Keys that open encrypted payloads (the device's decryption keys).
    pub decryption_keys: &'a [DecryptionKey<'a>],
}

/// The outcome of an author check of an authentic envelope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The manifest's sequence number.
    pub sequence_number: u64,
    /// Index of the trust anchor that verified the wrapper.
    pub anchor: usize,
    /// What was checked and matched, one line each.
    pub checked: Vec<String>,
    /// What only a device (or an option not given) can check, one line each.
    pub needs_device: Vec<String>,
    /// What component 0 holds at the end (decrypted when encrypted and a key opened it), when
    /// the envelope or `--image` supplies it.
    pub component0: Option<Vec<u8>>,
}

impl CheckReport {
    fn check(&mut self, line: String) {
        if !self.checked.contains(&line) {
            self.checked.push(line);
        }
    }

    fn need(&mut self, line: String) {
        if !self.needs_device.contains(&line) {
            self.needs_device.push(line);
        }
    }
}

/// Authenticates `envelope` with `anchors` and checks everything the envelope can prove
/// without a device; see the module documentation. `Err` when it is not authentic or any
/// digest it carries does not match.
pub fn check_package(
    envelope: &[u8],
    anchors: &[TrustAnchor<'_>],
    opts: &CheckOptions<'_>,
) -> Result<CheckReport, SuitError> {
    let mut report = CheckReport::default();
    let finals = check_into(
        envelope,
        anchors,
        opts,
        "",
        &[],
        MAX_DEPENDENCY_DEPTH,
        &mut report,
    )?;
    report.component0 = finals.contents.into_iter().next().flatten().map(|(_, b)| b);
    Ok(report)
}

/// What checking one envelope found: the anchor that verified it and the known contents of
/// its components (by index: identifier and bytes), which a dependent takes over.
struct Finals {
    anchor: usize,
    contents: Vec<Option<(Vec<u8>, Vec<u8>)>>,
}

/// Checks one envelope (the outer one, or a dependency under `prefix` that starts with the
/// parameters its dependent set for components of the same identifier, trust domains section
/// 6.3).
fn check_into<'e>(
    envelope: &'e [u8],
    anchors: &[TrustAnchor<'_>],
    opts: &CheckOptions<'_>,
    prefix: &str,
    inherited: &[(&[u8], Params<'e>)],
    depth: u8,
    report: &mut CheckReport,
) -> Result<Finals, SuitError> {
    let auth = authenticate(envelope, anchors, &Software)?;
    if prefix.is_empty() {
        report.sequence_number = auth.sequence_number;
        report.anchor = auth.anchor;
        report.need(format!(
            "sequence number {}: not compared with the device's, give --min-seq",
            auth.sequence_number
        ));
    }
    let members = manifest_members(auth.envelope.manifest)?;
    let mut walk = Walk::new(
        auth.envelope,
        &members,
        anchors,
        opts,
        prefix,
        depth,
        report,
    )?;
    walk.inherit(inherited);
    walk.severed()?;
    walk.run()?;
    let contents = (0..walk.content.len())
        .map(|i| match &walk.content[i] {
            Content::Bytes(b, _) => Some((walk.ids.get(i).copied()?.to_vec(), b.to_vec())),
            _ => None,
        })
        .collect();
    Ok(Finals {
        anchor: auth.anchor,
        contents,
    })
}

/// The manifest map's integer-keyed members as encoded items.
fn manifest_members(manifest: &[u8]) -> Result<Vec<(u64, &[u8])>, SuitError> {
    let mut r = Reader::new(manifest);
    let n = r.map()?;
    let mut out = Vec::new();
    for _ in 0..n {
        match r.int() {
            Ok(k) if k >= 0 => out.push((k as u64, r.raw_item()?)),
            _ => {
                r.skip()?;
            }
        }
    }
    Ok(out)
}

fn member_name(key: u64) -> &'static str {
    match key {
        14 => "coswid",
        15 => "dependency-resolution",
        16 => "payload-fetch",
        20 => "install",
        23 => "text",
        _ => "member",
    }
}

/// What a component holds at a point of the walk.
#[derive(Clone, Debug)]
enum Content<'e> {
    /// Whatever the device has there (installed image, empty slot).
    Device,
    /// Fetched from an absolute URI by the device.
    Uri(&'e [u8]),
    /// Known bytes: an integrated payload, written content, or a decrypted copy.
    Bytes(Cow<'e, [u8]>, &'static str),
    /// Encrypted bytes no given key decrypts (none was given).
    Encrypted,
}

struct Walk<'e, 'r, 'a, 'o> {
    env: Envelope<'e>,
    members: &'r [(u64, &'e [u8])],
    anchors: &'a [TrustAnchor<'a>],
    opts: &'o CheckOptions<'o>,
    prefix: &'r str,
    depth: u8,
    report: &'r mut CheckReport,
    dependencies: BTreeSet<usize>,
    /// Encoded component identifiers, by index.
    ids: Vec<&'e [u8]>,
    /// Integrated payloads some fetch takes.
    fetched: BTreeSet<&'e [u8]>,
    params: Vec<Params<'e>>,
    content: Vec<Content<'e>>,
}

impl<'e, 'r, 'a, 'o> Walk<'e, 'r, 'a, 'o> {
    fn new(
        env: Envelope<'e>,
        members: &'r [(u64, &'e [u8])],
        anchors: &'a [TrustAnchor<'a>],
        opts: &'o CheckOptions<'o>,
        prefix: &'r str,
        depth: u8,
        report: &'r mut CheckReport,
    ) -> Result<Self, SuitError> {
        let mut ids = Vec::new();
        let mut dependencies = BTreeSet::new();
        if let Some((_, common)) = members.iter().find(|(k, _)| *k == 3) {
            let mut r = Reader::new(Reader::new(common).bytes()?);
            for _ in 0..r.map()? {
                match r.int()? {
                    // suit-dependencies (trust domains): component index -> metadata.
                    1 => {
                        let mut d = Reader::new(r.raw_item()?);
                        for _ in 0..d.map()? {
                            dependencies.insert(
                                usize::try_from(d.uint()?).map_err(|_| SuitError::BadComponent)?,
                            );
                            d.skip()?;
                        }
                    }
                    2 => {
                        let mut c = Reader::new(r.raw_item()?);
                        for _ in 0..c.array()? {
                            ids.push(c.raw_item()?);
                        }
                    }
                    _ => r.skip()?,
                }
            }
        }
        let components = ids.len().max(1);
        let count = dependencies
            .iter()
            .next_back()
            .map_or(components, |d| components.max(d.saturating_add(1)));
        if count > 32 {
            return Err(SuitError::BadComponent);
        }
        Ok(Self {
            env,
            members,
            anchors,
            opts,
            prefix,
            depth,
            report,
            dependencies,
            ids,
            fetched: BTreeSet::new(),
            params: vec![Params::default(); count],
            content: vec![Content::Device; count],
        })
    }

    /// Starts components with the parameters a dependent set for the same identifier.
    fn inherit(&mut self, inherited: &[(&[u8], Params<'e>)]) {
        for (i, id) in self.ids.iter().enumerate() {
            if let Some((_, p)) = inherited.iter().find(|(other, _)| other == id) {
                if let Some(slot) = self.params.get_mut(i) {
                    *slot = *p;
                }
            }
        }
    }

    fn check(&mut self, line: String) {
        let line = format!("{}{line}", self.prefix);
        self.report.check(line);
    }

    fn need(&mut self, line: String) {
        let line = format!("{}{line}", self.prefix);
        self.report.need(line);
    }

    fn name(&self, i: usize) -> String {
        if self.dependencies.contains(&i) {
            format!("dependency {i}")
        } else {
            format!("component {i}")
        }
    }

    /// Severed members: the ones in the envelope match their signed digests; the others are
    /// listed as needing the full envelope.
    fn severed(&mut self) -> Result<(), SuitError> {
        for &(key, item) in self.members {
            if !SEVERABLE_KEYS.contains(&key) || Reader::new(item).peek_major()? != MAJOR_ARRAY {
                continue;
            }
            let digest = parse_digest(item)?;
            let name = member_name(key);
            match self.env.severed_member(key) {
                Some(delivered) if sha256(&Software, delivered) == digest => {
                    self.check(format!("severed {name}: matches its signed digest"));
                }
                Some(_) => return Err(SuitError::SeverableDigestMismatch),
                None => self.need(format!(
                    "{name}: severed and not in this envelope (only its digest is signed)"
                )),
            }
        }
        Ok(())
    }

    /// The content of the command sequence at manifest key `key`, if available.
    fn sequence(&self, key: u64) -> Result<Option<&'e [u8]>, SuitError> {
        let Some(&(_, item)) = self.members.iter().find(|(k, _)| *k == key) else {
            return Ok(None);
        };
        let mut r = Reader::new(item);
        if r.peek_major()? == MAJOR_BSTR {
            return r.bytes().map(Some);
        }
        match self.env.severed_member(key) {
            // Checked against its digest in `severed`.
            Some(delivered) => Reader::new(delivered).bytes().map(Some),
            None => Ok(None),
        }
    }

    fn shared(&self) -> Result<Option<&'e [u8]>, SuitError> {
        let Some(&(_, common)) = self.members.iter().find(|(k, _)| *k == 3) else {
            return Ok(None);
        };
        let mut r = Reader::new(Reader::new(common).bytes()?);
        for _ in 0..r.map()? {
            if r.int()? == 4 {
                return r.bytes().map(Some);
            }
            r.skip()?;
        }
        Ok(None)
    }

    fn run(&mut self) -> Result<(), SuitError> {
        if let Some(shared) = self.shared()? {
            self.walk(shared, MAX_DEPTH, false)?;
        }
        let after_shared = self.params.clone();
        for (key, _) in SEQUENCES {
            if let Some(seq) = self.sequence(key)? {
                self.params.clone_from(&after_shared);
                self.walk(seq, MAX_DEPTH, false)?;
            }
        }
        let unused: Vec<String> = self
            .env
            .payloads()
            .filter(|p| !self.fetched.contains(p.key))
            .map(|p| String::from_utf8_lossy(p.key).into_owned())
            .collect();
        for key in unused {
            self.need(format!(
                "integrated payload {key}: no fetch of it in the manifest"
            ));
        }
        Ok(())
    }

    fn walk(&mut self, seq: &'e [u8], depth: u8, soft: bool) -> Result<(), SuitError> {
        let depth = depth.checked_sub(1).ok_or(SuitError::TooDeep)?;
        let count = self.params.len();
        let mut r = Reader::new(seq);
        let n = r.array()?;
        if n % 2 != 0 {
            return Err(SuitError::Malformed);
        }
        let mut selected = 1u32;
        for _ in 0..n / 2 {
            let command = r.int()?;
            match command {
                cmd::SET_COMPONENT_INDEX => selected = component_set(&mut r, count, true)?,
                cmd::OVERRIDE_PARAMETERS | cmd::SET_PARAMETERS => {
                    let start = r.clone();
                    r.skip()?;
                    for i in bits(selected) {
                        let mut rr = start.clone();
                        let p = self.params.get_mut(i).ok_or(SuitError::BadComponent)?;
                        if command == cmd::OVERRIDE_PARAMETERS {
                            apply(&mut rr, p, None)?;
                        } else {
                            let mut fresh = Params::default();
                            apply(&mut rr, &mut fresh, None)?;
                            p.fill_unset(&fresh);
                        }
                    }
                }
                cmd::TRY_EACH => self.try_each(&mut r, depth)?,
                cmd::RUN_SEQUENCE => {
                    let body = r.bytes()?;
                    self.walk(body, depth, soft)?;
                }
                _ => {
                    r.uint()?; // reporting policy
                    for i in bits(selected) {
                        self.command(command, i, soft)?;
                    }
                }
            }
        }
        if r.is_empty() {
            Ok(())
        } else {
            Err(SuitError::Malformed)
        }
    }

    /// Every branch is walked from the same state; the first branch's outcome continues.
    fn try_each(&mut self, r: &mut Reader<'e>, depth: u8) -> Result<(), SuitError> {
        let n = r.array()?;
        let before = (self.params.clone(), self.content.clone());
        let mut first = None;
        for k in 0..n {
            if k + 1 == n && r.null()? {
                break;
            }
            let body = r.bytes()?;
            self.params.clone_from(&before.0);
            self.content.clone_from(&before.1);
            self.walk(body, depth, true)?;
            first.get_or_insert_with(|| (self.params.clone(), self.content.clone()));
        }
        let (params, content) = first.unwrap_or(before);
        self.params = params;
        self.content = content;
        Ok(())
    }

    fn param(&self, i: usize) -> Result<Params<'e>, SuitError> {
        self.params.get(i).copied().ok_or(SuitError::BadComponent)
    }

    fn command(&mut self, command: i64, i: usize, soft: bool) -> Result<(), SuitError> {
        let p = self.param(i)?;
        let name = self.name(i);
        match command {
            cmd::VENDOR_ID => match p.vendor_id {
                Some(v) => self.need(format!(
                    "vendor-id {}: not checked, give --vendor-id",
                    uuid_text(v)
                )),
                None => return Err(SuitError::MissingParameter),
            },
            cmd::CLASS_ID => match p.class_id {
                Some(c) => self.need(format!(
                    "class-id {}: not checked, give --class-id",
                    uuid_text(c)
                )),
                None => return Err(SuitError::MissingParameter),
            },
            cmd::DEVICE_ID => self.need(format!(
                "device-id {}: checked by the device",
                p.device_id.map(uuid_text).unwrap_or_default()
            )),
            cmd::COMPONENT_SLOT => {
                self.need(format!("component-slot ({name}): chosen by the device"))
            }
            cmd::CHECK_CONTENT => self.need(format!(
                "check-content ({name}): needs what the device stores"
            )),
            cmd::IMAGE_MATCH | cmd::DEPENDENCY_INTEGRITY => self.image_match(i, &p, soft)?,
            cmd::FETCH => self.fetch(i, &p)?,
            cmd::WRITE => {
                let content = p.content.ok_or(SuitError::MissingParameter)?;
                self.content[i] = match p.encryption_info {
                    Some(info) => self.decrypt(i, content, info)?,
                    None => Content::Bytes(Cow::Borrowed(content), "written content"),
                };
            }
            cmd::COPY | cmd::SWAP => {
                let src = p.source_component.ok_or(SuitError::MissingParameter)?;
                let src = usize::try_from(src).map_err(|_| SuitError::BadComponent)?;
                if src >= self.content.len() || src == i {
                    return Err(SuitError::BadComponent);
                }
                let from = self.content[src].clone();
                if command == cmd::SWAP {
                    self.content[src] = self.content[i].clone();
                }
                // --image is what the device fetches for component 0: for a decrypting copy
                // into component 0, the ciphertext.
                let given = self.given(i);
                self.content[i] = match (from, p.encryption_info, given) {
                    (Content::Bytes(b, _), Some(info), _) => self.decrypt(i, &b, info)?,
                    (Content::Uri(_), Some(info), Some(image)) => self.decrypt(i, image, info)?,
                    (_, Some(_), _) => {
                        self.need(format!(
                            "copy ({name}): decrypts component {src}, whose payload the device fetches; give it with --image"
                        ));
                        Content::Encrypted
                    }
                    (Content::Bytes(b, _), None, _) => Content::Bytes(b, "copied content"),
                    (other, None, _) => other,
                };
            }
            cmd::PROCESS_DEPENDENCY => self.process_dependency(i)?,
            cmd::IS_DEPENDENCY | cmd::INVOKE | cmd::UNLINK | cmd::ABORT => {}
            _ => return Err(SuitError::Unsupported),
        }
        Ok(())
    }

    fn fetch(&mut self, i: usize, p: &Params<'e>) -> Result<(), SuitError> {
        let uri = p.uri.ok_or(SuitError::MissingParameter)?;
        self.content[i] = if uri.first() == Some(&b'#') {
            self.fetched.insert(uri);
            let bytes = self.env.payload(uri).ok_or(SuitError::Truncated)?;
            Content::Bytes(Cow::Borrowed(bytes), "integrated payload")
        } else {
            Content::Uri(uri)
        };
        Ok(())
    }

    /// Decrypts `ciphertext` for component `i` with the given decryption keys (firmware-
    /// encryption draft sections 3-5). Without keys it is listed; with keys that do not open
    /// it, or a tag that fails, it is an error as on the device.
    fn decrypt(
        &mut self,
        i: usize,
        ciphertext: &[u8],
        info: &'e [u8],
    ) -> Result<Content<'e>, SuitError> {
        let name = self.name(i);
        let info = EncryptionInfo::parse(info)?;
        let alg = match info.alg {
            ContentAlg::A128Gcm => "A128GCM",
            ContentAlg::A128Ctr => "A128CTR",
        };
        if self.opts.decryption_keys.is_empty() {
            self.need(format!(
                "{name}: encrypted ({alg}), give --decrypt-key or --kek to decrypt and check it"
            ));
            return Ok(Content::Encrypted);
        }
        let cek = info.content_key(self.opts.decryption_keys, &Software)?;
        let mut plain = ciphertext.to_vec();
        let mut d = Decryptor::new(&info, &cek, plain.len() as u64)?;
        let n = d.update(&mut plain)?;
        d.finish()?;
        plain.truncate(n);
        let tag = if info.alg == ContentAlg::A128Gcm {
            ", tag verified"
        } else {
            ""
        };
        self.check(format!(
            "{name}: decrypted ({alg}{tag}), {} bytes",
            plain.len()
        ));
        Ok(Content::Bytes(Cow::Owned(plain), "decrypted payload"))
    }

    /// image-match (and, for a dependency, dependency-integrity): the digest is over the
    /// component's bytes, or over a dependency's bstr-wrapped manifest (trust domains 6.2).
    fn image_match(&mut self, i: usize, p: &Params<'e>, soft: bool) -> Result<(), SuitError> {
        let name = self.name(i);
        let want = p.image_digest.ok_or(SuitError::MissingParameter)?;
        // The author's --image (--second-image) stands for component 0 (1) of the outer
        // manifest wherever the device would bring it (fetched from a URI, or installed).
        let given = self.given(i);
        let option = if i == 0 { "--image" } else { "--second-image" };
        let (bytes, what): (Cow<'e, [u8]>, String) = match (&self.content[i], given) {
            (Content::Bytes(b, what), _) => (b.clone(), what.to_string()),
            (Content::Uri(_) | Content::Device, Some(image)) => (
                Cow::Owned(image.to_vec()),
                format!("image given with {option}"),
            ),
            (Content::Uri(uri), None) => {
                let uri = String::from_utf8_lossy(uri).into_owned();
                let hint = self.image_hint(i);
                self.need(format!(
                    "image-match ({name}): needs the image the device fetches from {uri}{hint}"
                ));
                return Ok(());
            }
            (Content::Device, None) => {
                let hint = self.image_hint(i);
                self.need(format!(
                    "image-match ({name}): needs the image on the device{hint}"
                ));
                return Ok(());
            }
            (Content::Encrypted, _) => {
                self.need(format!(
                    "image-match ({name}): over the decrypted payload, needs the decryption key"
                ));
                return Ok(());
            }
        };
        let dependency = self.dependencies.contains(&i);
        let covered: &[u8] = if dependency {
            Envelope::parse(&bytes)?.manifest_item
        } else {
            &bytes
        };
        let size_ok = p.image_size.is_none_or(|s| s == bytes.len() as u64);
        let digest_ok = sha256(&Software, covered) == want;
        match (size_ok, digest_ok) {
            (true, true) => {
                let what = if dependency {
                    format!("{what}'s manifest")
                } else {
                    what
                };
                self.check(format!(
                    "image-match ({name}): {what}, {} bytes, matches image-digest{}",
                    bytes.len(),
                    if p.image_size.is_some() {
                        " and image-size"
                    } else {
                        ""
                    }
                ));
                if given.is_some() && what.ends_with(option) {
                    self.check(format!("image verified against {option}"));
                }
                Ok(())
            }
            // In a try-each branch a failing condition only moves on to the next branch.
            _ if soft => {
                self.need(format!(
                    "image-match ({name}): {what} does not match in a try-each branch"
                ));
                Ok(())
            }
            (false, _) => Err(SuitError::ImageSizeMismatch),
            (true, false) => Err(SuitError::ImageDigestMismatch),
        }
    }

    /// How the author can supply component `i`'s image: `--image` stands for component 0.
    /// The image the author gave for component `i` of the outer manifest (`--image` for 0,
    /// `--second-image` for 1), wherever the device would bring it from.
    fn given(&self, i: usize) -> Option<&'o [u8]> {
        match (i, self.prefix.is_empty()) {
            (0, true) => self.opts.image,
            (1, true) => self.opts.second_image,
            _ => None,
        }
    }

    fn image_hint(&self, i: usize) -> &'static str {
        match (i, self.prefix.is_empty()) {
            (0, true) => ", give --image",
            (1, true) => ", give --second-image",
            _ => "",
        }
    }

    /// process-dependency: an integrated dependency is authenticated and checked in turn.
    fn process_dependency(&mut self, i: usize) -> Result<(), SuitError> {
        let name = self.name(i);
        let bytes = match &self.content[i] {
            Content::Bytes(b, _) => b.clone(),
            Content::Uri(uri) => {
                let uri = String::from_utf8_lossy(uri).into_owned();
                self.need(format!("{name}: fetched by the device from {uri}"));
                return Ok(());
            }
            _ => {
                self.need(format!("{name}: processed by the device"));
                return Ok(());
            }
        };
        let depth = self.depth.checked_sub(1).ok_or(SuitError::TooDeep)?;
        let prefix = format!("{}{name}: ", self.prefix);
        let inherited: Vec<(&[u8], Params<'_>)> = self
            .ids
            .iter()
            .copied()
            .zip(self.params.iter().copied())
            .collect();
        match check_into(
            &bytes,
            self.anchors,
            self.opts,
            &prefix,
            &inherited,
            depth,
            self.report,
        ) {
            Ok(finals) => {
                self.check(format!("{name}: authentic, key #{}", finals.anchor));
                // What the dependency put into components this manifest also names.
                for (id, bytes) in finals.contents.into_iter().flatten() {
                    if let Some(j) = self.ids.iter().position(|mine| *mine == id.as_slice()) {
                        self.content[j] = Content::Bytes(Cow::Owned(bytes), "dependency's content");
                    }
                }
                Ok(())
            }
            Err(SuitError::BadSignature | SuitError::UnsupportedAlgorithm) => {
                self.need(format!(
                    "{name}: signed by a key not given, add its --pub to check it"
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn bits(set: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |i| set & (1u32 << i) != 0)
}

fn uuid_text(id: &[u8]) -> String {
    if id.len() == 16 {
        format_uuid(id)
    } else {
        id.iter().map(|b| format!("{b:02x}")).collect()
    }
}
