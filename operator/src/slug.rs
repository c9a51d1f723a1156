//! werf's slug algorithms (werf v2 `pkg/slug`), reproduced exactly so that tags and names that
//! Kiln derives from image names (`%image_slug%`, `%image_safe_slug%`, namespaces) are the
//! ones werf derives.
//!
//! Two building blocks:
//! - [`slugify`]: per-character transliteration through a fixed table (ASCII letters and digits
//!   kept, upper case lowered, Latin and Cyrillic letters transliterated, separators turned into
//!   `-`, everything else dropped), dashes collapsed, no leading dash, one trailing dash removed.
//! - the hashing slug: `slugify(s)` cropped so that `-` plus werf's legacy murmur3 hash of the
//!   *original* string fits the size limit.
//!
//! Lengths are byte lengths, as in werf (the slugified part is always ASCII).

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::LazyLock;

/// werf's `DefaultSlugMaxSize`: the legacy default limit of [`limited_slug`].
pub const DEFAULT_SLUG_MAX_SIZE: usize = 42;
/// Longest valid docker tag (werf's `DockerTagMaxSize`).
pub const DOCKER_TAG_MAX_SIZE: usize = 128;
/// Longest valid werf project name.
pub const PROJECT_MAX_SIZE: usize = 50;
/// Longest Kubernetes namespace (a DNS-1123 label).
pub const KUBERNETES_NAMESPACE_MAX_SIZE: usize = 63;
/// Longest Helm release name werf accepts.
pub const HELM_RELEASE_MAX_SIZE: usize = 53;

/// The transliteration table, grouped by output: every character of the first string maps to
/// the second. Characters absent from the table (and `ъ`, `ь`, which map to nothing) are dropped.
const TRANSLITERATION: &[(&str, &str)] = &[
    ("0⓪", "0"),
    ("1", "1"),
    ("2²", "2"),
    ("3³", "3"),
    ("4", "4"),
    ("5", "5"),
    ("6", "6"),
    ("7", "7"),
    ("8", "8"),
    ("9⒐", "9"),
    ("⒑", "10"),
    ("⒒", "11"),
    ("⒓", "12"),
    ("⒔", "13"),
    ("⒕", "14"),
    ("⒖", "15"),
    ("⒗", "16"),
    ("⒘", "17"),
    ("⒙", "18"),
    ("⒚", "19"),
    ("⒛", "20"),
    ("&(){}-_[],.;:=+<>~/ ＿～", "-"),
    (
        "Aa\u{c0}\u{c1}\u{c2}\u{c3}\u{c4}\u{c5}\u{e0}\u{e1}\u{e2}\u{e3}\u{e4}\u{e5}ĀāĂăĄąǍǎǞǟǠǡǺǻȀȁȂȃȦȧȺɑᴀḀḁẚẠạẢảẤấẦầẨẩẪẫẬậẮắẰằẲẳẴẵẶặₐ\u{212b}⒜Ⓐⓐ\u{410}\u{430}Ａａ",
        "a",
    ),
    ("ÆæǢǣǼǽᴁᴂ", "ae"),
    ("Bbßƀ\u{181}ƄƅɃᴃḂḃḄḅḆḇℬ⒝Ⓑⓑ\u{411}\u{431}Ｂｂ", "b"),
    ("CcÇçĆćĈĉĊċČčƇƈȻȼᴄḈḉℂ℃℄⒞Ⓒⓒ\u{426}\u{446}Ｃｃ", "c"),
    (
        "DdÐĎďĐđ\u{189}\u{18a}ɗᴅᴆḊḋḌḍḎḏḐḑḒḓ⒟Ⓓⓓ\u{414}\u{434}Ｄｄ",
        "d",
    ),
    (
        "EeÈÉÊËèéêëĒēĔĕĖėĘęĚě\u{190}ǝȄȅȆȇȨȩɆɇᴇḔḕḖḗḘḙḚḛḜḝẸẹẺẻẼẽẾếỀềỂểỄễỆệₑ℮ℯ⒠Ⓔⓔ\u{42d}\u{44d}Ｅｅ",
        "e",
    ),
    ("FfƑƒḞḟ℉⒡Ⓕⓕꜰ\u{424}\u{444}Ｆｆ", "f"),
    ("GgĜĝĞğĠġĢģƓǤǥǦǧǴǵɠɡɢḠḡℊ⒢Ⓖⓖ\u{413}\u{433}Ｇｇ", "g"),
    ("HhĤĥĦħȞȟḢḣḤḥḦḧḨḩḪḫẖℋℌℍℎℏ⒣Ⓗⓗ\u{425}\u{445}Ｈｈ", "h"),
    ("IiÌÍÎÏìíîïĨĩĪīĬĭĮįƖƗǏǐȈȉȊȋḬḭḮḯ⒤Ⓘⓘ\u{418}\u{438}Ｉｉ", "i"),
    ("Ĳĳ", "ij"),
    ("JjĴĵǰȷɈɉᴊ⒥Ⓙⓙ\u{419}\u{439}Ｊｊ", "j"),
    ("KkĶķĸƘƙǨǩᴋḰḱḲḳḴḵ\u{212a}⒦Ⓚⓚ\u{41a}\u{43a}Ｋｋ", "k"),
    ("LlİıĹĺĻļĽľĿŀŁłȽȾᴌḶḷḸḹḺḻḼḽ⒧Ⓛⓛ\u{41b}\u{43b}Ｌｌ", "l"),
    ("Ǉǈǉ", "lj"),
    ("MmɱᴍḾḿṀṁṂṃ⒨Ⓜⓜ\u{41c}\u{43c}Ｍｍ", "m"),
    ("NnÑñŃńŅņŇňŉŊŋƝƞǸǹȠᴎṄṅṆṇṈṉṊṋℕ⒩Ⓝⓝ\u{41d}\u{43d}Ｎｎ", "n"),
    ("Ƌƌ", "nd"),
    ("Ǌǋǌ", "nj"),
    (
        "OoÒÓÔÕÖØðòóôõöøŌōŎŏŐőƟƠơǑǒǪǫǬǭǾǿȌȍȎȏȪȫȬȭȮȯȰȱɵᴏṌṍṎṏṐṑṒṓỌọỎỏỐốỒồỔổỖỗỘộỚớỜờỞởỠỡỢợₒ⒪Ⓞⓞ\u{41e}\u{43e}Ｏｏ",
        "o",
    ),
    ("Œœɶ", "oe"),
    ("PpƤƥṔṕṖṗ℗ℙ⒫Ⓟⓟ\u{41f}\u{43f}Ｐｐ", "p"),
    ("QqƼƽɊɋℚ⒬Ⓠⓠ\u{ff31}\u{ff51}", "q"),
    ("RrŔŕŖŗŘřƦȐȑȒȓɌɍṘṙṚṛṜṝṞṟℛℜℝ℟⒭Ⓡⓡ\u{420}\u{440}Ｒｒ", "r"),
    ("SsŚśŜŝŞşŠšſƧƨƩȘșȿṠṡṢṣṤṥṦṧṨṩ⒮Ⓢⓢꜱ\u{421}\u{441}Ｓｓ", "s"),
    ("TtŢţŤťŦŧƪƫƬƭƮȚțṪṫṬṭṮṯṰṱẗ⒯Ⓣⓣ\u{422}\u{442}Ｔｔ", "t"),
    ("Þþ", "th"),
    (
        "UuµÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųƯưƱƲǓǔǕǖǗǘǙǚǛǜȔȕȖȗɄṲṳṴṵṶṷṸṹṺṻỤụỦủỨứỪừỬửỮữỰự⒰Ⓤⓤ\u{423}\u{443}Ｕｕ",
        "u",
    ),
    ("VvɅṼṽṾṿ⒱Ⓥⓥ\u{412}\u{432}Ｖｖ", "v"),
    ("WwŴŵƜɯẀẁẂẃẄẅẆẇẈẉẘ⒲Ⓦⓦ\u{ff37}\u{ff57}", "w"),
    ("Xx×ẊẋẌẍₓ⒳Ⓧⓧ\u{ff38}\u{ff58}", "x"),
    ("YyÝýÿŶŷŸȲȳɎɏẙẎẏỲỳỴỵỶỷỸỹ⒴Ⓨⓨ\u{42b}\u{44b}Ｙｙ", "y"),
    ("ZzŹźŻżŽžƵƶƷȤȥɀẐẑẒẓẔẕℤ⒵Ⓩⓩ\u{417}\u{437}Ｚｚ", "z"),
    ("ǄǅǆǱǲǳ", "dz"),
    ("ȸ", "db"),
    ("ȹ", "qp"),
    ("Ꜳꜳ", "aa"),
    ("Ꜵꜵ", "ao"),
    ("Ꜷꜷ", "aj"),
    ("Ꜹꜹ", "av"),
    ("ꜺꜻꜼꜽ", "af"),
    ("℀", "ac"),
    ("℁", "as"),
    ("℅", "co"),
    ("℆", "cu"),
    ("℞", "px"),
    ("℠", "sm"),
    ("℡", "tel"),
    ("™", "tm"),
    // Cyrillic letters that transliterate to more than one letter.
    ("\u{415}\u{435}", "ye"),
    ("\u{401}\u{451}", "yo"),
    ("\u{416}\u{436}", "zh"),
    ("\u{427}\u{447}", "ch"),
    ("\u{428}\u{448}", "sh"),
    ("\u{429}\u{449}", "shch"),
    ("\u{42e}\u{44e}", "yu"),
    ("\u{42f}\u{44f}", "ya"),
];

static TABLE: LazyLock<HashMap<char, &'static str>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for (sources, target) in TRANSLITERATION {
        for c in sources.chars() {
            let previous = map.insert(c, *target);
            debug_assert!(previous.is_none(), "{c:?} listed twice");
        }
    }
    map
});

/// werf's legacy murmur hash: murmur3 32-bit, seed 0, over the UTF-8 bytes, printed as
/// lowercase hex **without zero padding** (1–8 characters).
pub fn legacy_murmur_hash(data: &str) -> String {
    let hash = murmur3::murmur3_32(&mut Cursor::new(data.as_bytes()), 0)
        .expect("reading from an in-memory cursor cannot fail");
    format!("{hash:x}")
}

/// werf's `slugify`: transliterate each character through the table, drop a dash at the start
/// or right after another dash, then drop one trailing dash.
///
/// The trailing-dash rule looks at the last character that produced output, as werf does: in
/// `"a-ъ"` the `ъ` produces nothing, so the dash is still last and is removed.
pub fn slugify(data: &str) -> String {
    let mut result = String::with_capacity(data.len());
    let mut last_was_dash = false;
    for c in data.chars() {
        let Some(out) = TABLE.get(&c).copied().filter(|s| !s.is_empty()) else {
            continue;
        };
        let is_dash = out == "-";
        if is_dash && (result.is_empty() || last_was_dash) {
            // Skipped, but it still counts as the last emitted character for the final check.
            last_was_dash = true;
            continue;
        }
        result.push_str(out);
        last_was_dash = is_dash;
    }
    if last_was_dash && !result.is_empty() && result.ends_with('-') {
        result.pop();
    }
    result
}

/// werf's hashing `slug(data, maxSize)`: `slugify(data)` cropped to `max - len(hash) - 1` bytes,
/// then `-` and the legacy murmur hash of the original `data`; the bare hash when the slug is
/// empty. Keeps werf's legacy quirk: when the cropped part *starts* with `-` its last byte is
/// dropped (werf meant "ends with"; changing it would change existing names).
fn hashed_slug(data: &str, max: usize) -> String {
    let slugged = slugify(data);
    let hash = legacy_murmur_hash(data);
    if slugged.is_empty() {
        return hash;
    }
    let limit = max.saturating_sub(hash.len() + 1);
    let mut cropped = &slugged[..slugged.len().min(limit)];
    if cropped.starts_with('-') {
        cropped = &cropped[..cropped.len() - 1];
    }
    format!("{cropped}-{hash}")
}

/// `%image_slug%`: werf's `Slug(s)`, which is plain [`slugify`] (no hash, no length limit).
pub fn slug(data: &str) -> String {
    slugify(data)
}

/// werf's `LimitedSlug(s, max)`: `s` unchanged when empty, when already a slug no longer than
/// `max`, or (legacy idempotence) when no longer than `max` with exactly one `--` whose
/// replacement by `-` is a slug; otherwise the hashing slug limited to `max` bytes.
pub fn limited_slug(data: &str, max: usize) -> String {
    if !should_be_slugged(data, max) {
        return data.to_string();
    }
    hashed_slug(data, max)
}

fn should_be_slugged(data: &str, max: usize) -> bool {
    if data.is_empty() {
        return false;
    }
    if data.len() <= max && slugify(data) == data {
        return false;
    }
    // Legacy idempotence for already-slugged values that contain a `--` before the hash.
    if data.len() > max || data.matches("--").count() != 1 {
        return true;
    }
    let formatted = data.replacen("--", "-", 1);
    slugify(&formatted) != formatted
}

/// Whether `tag` is a valid docker tag as werf checks it: `^[\w][\w.-]*$` (ASCII word
/// characters), at most 128 bytes. The empty string counts as valid, as in werf.
pub fn is_valid_docker_tag(tag: &str) -> bool {
    if tag.is_empty() {
        return true;
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    tag.len() <= DOCKER_TAG_MAX_SIZE
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `%image_safe_slug%`: werf's `DockerTag(s)` — `s` unchanged when it is a valid docker tag,
/// otherwise the hashing slug limited to 128 bytes.
pub fn docker_tag(data: &str) -> String {
    if is_valid_docker_tag(data) {
        data.to_string()
    } else {
        hashed_slug(data, DOCKER_TAG_MAX_SIZE)
    }
}

/// Whether `name` is a valid werf project name: `^(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$`,
/// at most 50 bytes. The empty string counts as valid here, as in werf (a missing project is
/// reported separately by the config parser).
pub fn is_valid_project(name: &str) -> bool {
    name.is_empty() || (name.len() <= PROJECT_MAX_SIZE && is_dns1123_label_chars(name))
}

/// werf's `Project(s)`: `s` when valid, otherwise `slugify(s)` truncated to 50 bytes (no hash).
pub fn project(name: &str) -> String {
    if is_valid_project(name) {
        return name.to_string();
    }
    let mut slugged = slugify(name);
    slugged.truncate(PROJECT_MAX_SIZE);
    slugged
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` — the character rule shared by project names and DNS-1123
/// labels.
fn is_dns1123_label_chars(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
}

/// werf's `KubernetesNamespace(s)`: `s` when empty or a DNS-1123 label of at most 63 bytes,
/// otherwise the hashing slug limited to 63 bytes.
pub fn kubernetes_namespace(name: &str) -> String {
    if name.is_empty()
        || (name.len() <= KUBERNETES_NAMESPACE_MAX_SIZE && is_dns1123_label_chars(name))
    {
        return name.to_string();
    }
    hashed_slug(name, KUBERNETES_NAMESPACE_MAX_SIZE)
}

/// werf's `HelmRelease(s)`: `s` when empty or a DNS-1123 subdomain of at most 53 bytes,
/// otherwise the hashing slug limited to 53 bytes.
pub fn helm_release(name: &str) -> String {
    let valid_subdomain = name.len() <= 253 && name.split('.').all(is_dns1123_label_chars);
    if name.is_empty() || (name.len() <= HELM_RELEASE_MAX_SIZE && valid_subdomain) {
        return name.to_string();
    }
    hashed_slug(name, HELM_RELEASE_MAX_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_vectors_are_unpadded_hex() {
        // Vectors from the reference (computed independently of this code).
        assert_eq!(legacy_murmur_hash("A"), "54dcf7ce");
        assert_eq!(legacy_murmur_hash("-data"), "a871d86e");
        assert_eq!(legacy_murmur_hash(&"x".repeat(43)), "27e2f02f");
        // 7 characters: no zero padding.
        assert_eq!(legacy_murmur_hash("da/ta"), "afa96f8");
        // murmur3_32("", seed 0) is 0.
        assert_eq!(legacy_murmur_hash(""), "0");
    }

    #[test]
    fn slugify_transliterates_and_collapses_dashes() {
        assert_eq!(slugify("Hello World"), "hello-world");
        assert_eq!(slugify("--a__b--"), "a-b");
        assert_eq!(slugify("Щука Ёлка"), "shchuka-yolka");
        assert_eq!(slugify("объект"), "obyekt");
        assert_eq!(slugify("Crème brûlée"), "creme-brulee");
        assert_eq!(slugify("a@b#c!"), "abc");
        assert_eq!(slugify("a-ъ"), "a");
        assert_eq!(slugify("²µ"), "2u");
        assert_eq!(slugify("⒛"), "20");
        assert_eq!(slugify("™"), "tm");
        assert_eq!(slugify("ｆｕｌｌ＿ｗｉｄｔｈ"), "full-width");
        assert_eq!(slugify("İ"), "l");
        assert_eq!(slugify("@@@"), "");
    }

    #[test]
    fn limited_slug_vectors() {
        assert_eq!(limited_slug("", 42), "");
        assert_eq!(limited_slug("data", 42), "data");
        assert_eq!(limited_slug("A", 42), "a-54dcf7ce");
        assert_eq!(
            limited_slug(&"x".repeat(43), DEFAULT_SLUG_MAX_SIZE),
            format!("{}-27e2f02f", "x".repeat(33))
        );
        assert_eq!(
            limited_slug("postgres-feature-31981-change-delivery-date-del-result", 48),
            "postgres-feature-31981-change-delivery--852739dc"
        );
        assert_eq!(
            limited_slug("php_fpm_exporter-monitoring-dev-encrypt-1", 48),
            "php-fpm-exporter-monitoring-dev-encrypt--83286e5"
        );
    }

    #[test]
    fn limited_slug_is_idempotent() {
        for (data, max) in [
            ("A", 42),
            ("postgres-feature-31981-change-delivery-date-del-result", 48),
            ("php_fpm_exporter-monitoring-dev-encrypt-1", 48),
        ] {
            let once = limited_slug(data, max);
            assert!(once.len() <= max);
            assert_eq!(limited_slug(&once, max), once);
        }
    }

    #[test]
    fn docker_tag_vectors() {
        assert_eq!(docker_tag(""), "");
        assert_eq!(docker_tag("-data"), "data-a871d86e");
        assert_eq!(docker_tag("da/ta"), "da-ta-afa96f8");
        assert_eq!(docker_tag("16.04"), "16.04");
        assert_eq!(docker_tag("v1.2_RC-1"), "v1.2_RC-1");
        let long = "x".repeat(129);
        let tagged = docker_tag(&long);
        assert_eq!(tagged, format!("{}-8cca70eb", "x".repeat(119)));
        assert_eq!(docker_tag(&tagged), tagged);
    }

    #[test]
    fn docker_tag_validity() {
        assert!(is_valid_docker_tag("latest"));
        assert!(is_valid_docker_tag("_x"));
        assert!(!is_valid_docker_tag(".x"));
        assert!(!is_valid_docker_tag("-x"));
        assert!(!is_valid_docker_tag("a/b"));
        assert!(!is_valid_docker_tag("é"));
        assert!(is_valid_docker_tag(&"a".repeat(128)));
        assert!(!is_valid_docker_tag(&"a".repeat(129)));
    }

    #[test]
    fn kubernetes_namespace_vectors() {
        assert_eq!(kubernetes_namespace(""), "");
        assert_eq!(kubernetes_namespace("data"), "data");
        assert_eq!(kubernetes_namespace("da_ta"), "da-ta-3b339d14");
        assert_eq!(
            kubernetes_namespace("kubernetes.namespace"),
            "kubernetes-namespace-1507f75c"
        );
        assert_eq!(
            kubernetes_namespace(&"x".repeat(64)),
            format!("{}-afd4efcd", "x".repeat(54))
        );
        // Examples from werf's `slugify` command documentation.
        assert_eq!(kubernetes_namespace("feature-fix-2"), "feature-fix-2");
        assert_eq!(
            kubernetes_namespace("branch/one/!@#4.4-3"),
            "branch-one-4-4-3-4fe08955"
        );
        assert_eq!(kubernetes_namespace("My_branch"), "my-branch-8ebf2d1d");
    }

    #[test]
    fn helm_release_vectors() {
        assert_eq!(helm_release("data"), "data");
        assert_eq!(helm_release("release.name"), "release.name");
        assert_eq!(helm_release("-data"), "data-a871d86e");
        assert_eq!(helm_release("da/ta"), "da-ta-afa96f8");
        assert_eq!(
            helm_release(&"x".repeat(54)),
            format!("{}-18c5dfb9", "x".repeat(44))
        );
    }

    #[test]
    fn project_names() {
        assert!(is_valid_project("shop"));
        assert!(is_valid_project("my-shop-2"));
        assert!(!is_valid_project("My-shop"));
        assert!(!is_valid_project("-shop"));
        assert!(!is_valid_project("shop-"));
        assert!(!is_valid_project("shop_1"));
        assert!(!is_valid_project(&"a".repeat(51)));
        assert_eq!(project("My_Shop"), "my-shop");
        assert_eq!(project(&"a".repeat(60)), "a".repeat(50));
    }

    #[test]
    fn table_has_no_duplicates() {
        let total: usize = TRANSLITERATION.iter().map(|(s, _)| s.chars().count()).sum();
        assert_eq!(TABLE.len(), total);
    }
}
