"""Normalisation, chunking, dedup, and the prepare step's rejects and accounting."""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from xinstruct.curate.prepare import Deduplicator, PrepareConfig, normalize_text, prepare, split_chunks
from xinstruct.curate.readers import Document, read_documents
from xinstruct.records import Record, Reject

# Our own Indonesian sentences, varied enough that documents built from different ones are not duplicates.
ID_SENTENCES = [
    "Pemerintah kota berencana membangun taman baru di dekat stasiun kereta api.",
    "Anak-anak bermain sepak bola di lapangan setelah pulang dari sekolah.",
    "Harga beras di pasar tradisional naik sejak awal bulan ini.",
    "Ibu saya memasak rendang dan sayur lodeh untuk acara keluarga.",
    "Banyak wisatawan datang ke Bali untuk menikmati pantai dan budaya setempat.",
    "Petani di desa itu menanam padi dua kali dalam setahun.",
    "Guru meminta murid-murid mengerjakan tugas matematika di rumah.",
    "Jalan tol yang baru dibuka mempersingkat waktu perjalanan ke Bandung.",
    "Kami akan berangkat ke Yogyakarta besok pagi naik kereta.",
    "Rumah sakit itu menambah jumlah tempat tidur untuk pasien demam berdarah.",
    "Perpustakaan daerah membuka layanan peminjaman buku secara daring.",
    "Nelayan tidak melaut karena ombak tinggi dan angin kencang.",
    "Mahasiswa itu sedang menyelesaikan skripsi tentang bahasa daerah.",
    "Kopi dari Aceh terkenal karena rasanya yang kuat dan harum.",
    "Warga bergotong royong membersihkan selokan menjelang musim hujan.",
    "Toko kue di ujung jalan selalu ramai pada hari Minggu.",
    "Presiden meresmikan bendungan baru untuk mengairi sawah petani.",
    "Adik saya suka menggambar binatang di buku tulisnya.",
    "Pasar malam di alun-alun kota dibuka setiap akhir pekan.",
    "Dokter menyarankan agar kita tidur cukup dan makan sayuran setiap hari.",
    "Bus kota itu penuh sesak oleh penumpang pada jam berangkat kerja.",
    "Sekolah kami mengadakan lomba membaca puisi untuk memperingati hari kemerdekaan.",
    "Kebakaran hutan di Kalimantan menyebabkan kabut asap yang tebal.",
    "Nenek bercerita tentang masa kecilnya di kampung yang jauh dari kota.",
]
SW_TEXT = ("Serikali imetangaza mpango mpya wa kuwasaidia wakulima wadogo katika mikoa yote ya nchi. "
           "Daktari alimshauri mgonjwa apumzike na anywe dawa kwa wakati kila siku.")
FI_TEXT = ("Hallitus on ilmoittanut uudesta ohjelmasta pienviljelijöiden tukemiseksi kaikissa maakunnissa. "
           "Lääkäri neuvoi potilasta lepäämään ja ottamaan lääkkeensä ajallaan joka päivä.")
TH_SENTENCES = [
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทยและเป็นเมืองที่ใหญ่ที่สุด",
    "เช้านี้ฝนตกหนักมาก เด็กๆ จึงไม่ได้ไปโรงเรียน",
    "รัฐบาลได้ประกาศโครงการใหม่เพื่อช่วยเหลือเกษตรกรรายย่อย",
    "ฉันชอบอ่านหนังสือภาษาไทยมาก โดยเฉพาะนิยายของนักเขียนไทย",
    "แพทย์แนะนำให้ผู้ป่วยพักผ่อนและทานยาให้ตรงเวลา",
    "ในหมู่บ้านของเรามีวัดเก่าแก่ที่จัดงานประจำปีทุกปี",
]
HINDI = "क्षत्रिय राजकुमार ने कहा कि विद्यार्थियों को हिंदी साहित्य पढ़ना चाहिए"  # conjuncts with virama
BENGALI = "র‍্যাব ক্ষমতা বিজ্ঞান"  # RA + virama + ZWJ + YA (ra-phala), ksha conjunct
URDU = "وہ ‌کتاب پڑھ رہی ہیں۔ میں نے ‌اسکول دیکھا۔"  # with ZWNJ
TAMIL = "தமிழ்நாட்டின் தலைநகரம் சென்னை ஆகும்"


def _id_para(start: int, n: int = 4) -> str:
    return " ".join(ID_SENTENCES[(start + i) % len(ID_SENTENCES)] for i in range(n))


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- normalize_text --------------------------------------------------------------------------

def test_normalize_cleans_layout() -> None:
    raw = "\ufeffCafe\u0301 au lait  \r\nline\x00 two\t\x07\r\r\n\n\n\n\nlast\u2028x   \n\n"
    assert normalize_text(raw) == "Café au lait\nline two\n\nlast\nx"
    assert normalize_text("a\n\n\n\nb") == "a\n\nb" and normalize_text("a\n\nb") == "a\n\nb"
    assert normalize_text(" \n\t\x00 ") == ""
    assert normalize_text("lone \ud800 surrogate") == "lone \ufffd surrogate"


@pytest.mark.parametrize("text", [HINDI, BENGALI, URDU, TAMIL])
def test_normalize_keeps_marks_and_joiners(text: str) -> None:
    out = normalize_text(text)
    assert out == unicodedata.normalize("NFC", text)
    for ch in ("\u200c", "\u200d", "\u094d", "\u09cd", "\u0bcd"):
        assert out.count(ch) == text.count(ch)


# --- split_chunks ----------------------------------------------------------------------------

def test_paragraphs_are_packed_up_to_target() -> None:
    paras = [_id_para(i) for i in range(0, 24, 2)]  # ~270 chars each
    text = "\n\n".join(paras)
    chunks = split_chunks(text, target=600, max_chars=800)
    assert all(len(c) <= 600 for c in chunks)
    assert len(chunks) == len(paras) // 2  # two paragraphs fit, three do not
    assert chunks[0] == paras[0] + "\n\n" + paras[1]
    assert _squash("".join(chunks)) == _squash(text)
    assert split_chunks(text, 600, 800) == chunks  # deterministic


def test_short_text_is_one_chunk_and_sizes_are_validated() -> None:
    assert split_chunks("Halo dunia.", 1500, 2500) == ["Halo dunia."]
    assert split_chunks("", 1500, 2500) == []
    with pytest.raises(ValueError):
        split_chunks("x", 2000, 1000)


def test_long_paragraph_splits_at_danda_and_urdu_full_stop() -> None:
    hi = "".join(f"यह वाक्य संख्या {i} है और इसमें कुछ शब्द हैं। " for i in range(60)).strip()
    ur = "".join(f"یہ جملہ نمبر {i} ہے اور اس میں کچھ الفاظ ہیں۔ " for i in range(60)).strip()
    for text, stop in ((hi, "।"), (ur, "۔")):
        chunks = split_chunks(text, target=300, max_chars=400)
        assert len(chunks) > 3 and all(len(c) <= 400 for c in chunks)
        assert all(c.endswith(stop) for c in chunks)
        assert _squash("".join(chunks)) == _squash(text)


def test_thai_without_punctuation_splits_at_spaces() -> None:
    text = " ".join(TH_SENTENCES * 20)
    chunks = split_chunks(text, target=500, max_chars=700)
    assert len(chunks) > 3 and all(len(c) <= 700 for c in chunks)
    assert _squash("".join(chunks)) == _squash(text)
    assert all(c in text for c in chunks)


@pytest.mark.parametrize("text", ["".join(TH_SENTENCES).replace(" ", "") * 10, HINDI.replace(" ", "") * 30,
                                  BENGALI.replace(" ", "") * 60])
def test_hard_cut_never_splits_a_grapheme(text: str) -> None:
    chunks = split_chunks(text, target=97, max_chars=120)
    assert len(chunks) > 3 and all(len(c) <= 120 for c in chunks)
    assert "".join(chunks) == text
    for left, right in itertools.pairwise(chunks):
        assert not unicodedata.category(right[0]).startswith("M")  # no chunk starts with a mark
        assert right[0] not in "\u200c\u200d" and left[-1] not in "\u200c\u200d"
        assert unicodedata.combining(left[-1]) != 9  # no chunk ends with a virama


def test_short_tail_is_merged_into_neighbour() -> None:
    text = _id_para(0, 6) + "\n\nSelesai."
    assert split_chunks(text, 300, 600)[-1] == "Selesai."  # without min_chars: alone
    merged = split_chunks(text, 300, 600, min_chars=80)
    assert merged[-1].endswith("Selesai.") and len(merged[-1]) > 80


# --- Deduplicator ----------------------------------------------------------------------------

def test_deduplicator_exact_near_and_distinct() -> None:
    d = Deduplicator(threshold=0.8, num_perm=128, shingle=5)
    base = _id_para(0, 8)
    assert d.check("a", base) is None
    assert d.check("b", "  " + base.upper().replace(" ", "\n ")) == ("exact_duplicate", "a", 1.0)
    near = base.replace("Bandung", "Surabaya", 1) + " Terima kasih."
    reason, first, sim = d.check("c", near)
    assert (reason, first) == ("near_duplicate", "a") and 0.8 <= sim < 1.0
    assert d.check("d", _id_para(12, 8)) is None
    assert d.check("e", _id_para(12, 8)) == ("exact_duplicate", "d", 1.0)


def test_deduplicator_word_shingles_and_no_near() -> None:
    d = Deduplicator(shingle=3, unit="word", near=False)
    base = _id_para(0, 8)
    assert d.check("a", base) is None
    assert d.check("b", base + " Terima kasih.") is None  # near dedup off
    with pytest.raises(ValueError):
        Deduplicator(unit="byte")


# --- prepare ---------------------------------------------------------------------------------

def _doc(doc_id: str, text: str, lang: str | None = None) -> Document:
    return Document(doc_id=doc_id, text=text, lang=lang, source=f"corpus.jsonl:{doc_id}",
                    meta={"url": doc_id})


def _run(items, langs, **cfg) -> list[Record | Reject]:
    return list(prepare(items, langs, PrepareConfig(**cfg)))


def test_mixed_corpus_rejects_and_accounting(tmp_path: Path) -> None:
    big = "\n\n".join(_id_para(i, 6) for i in range(24))  # several chunks
    rows = [
        {"id": "multi", "text": big, "lang": "id"},
        {"id": "single", "text": _id_para(3, 3), "url": "http://a"},
        "MALFORMED",
        {"id": "empty", "text": "\x00\x01  \n"},
        {"id": "huge", "text": ID_SENTENCES[0] * 14_000},  # ~1 MB
        {"id": "swahili", "text": SW_TEXT},  # no declared lang: single target -> chunk mismatch
        {"id": "declared_fi", "text": FI_TEXT, "lang": "fi"},
        {"id": "copy", "text": _id_para(3, 3).upper()},
        {"id": "near", "text": _id_para(3, 3) + " Terima kasih banyak."},
        {"id": "tiny", "text": "Halo."},
        {"id": "mixed", "text": _id_para(9, 8) + "\n\n" + SW_TEXT},
    ]
    p = tmp_path / "corpus.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    out = _run(read_documents(p), {"id"}, chunk_chars=600, max_chunk_chars=900)

    records = [x for x in out if isinstance(x, Record)]
    doc_rej = {x.doc_id: x for x in out if isinstance(x, Reject) and x.unit == "document"}
    chunk_rej = [x for x in out if isinstance(x, Reject) and x.unit == "chunk"]

    assert {k: v.reason for k, v in doc_rej.items()} == {
        "corpus.jsonl:3": "malformed_json", "empty": "empty_text", "huge": "too_long",
        "declared_fi": "not_target_language", "copy": "exact_duplicate", "tiny": "too_short"}
    assert "1,0" in doc_rej["huge"].detail and "max_doc_chars=500,000" in doc_rej["huge"].detail
    assert "document single" in doc_rej["copy"].detail and "copy" in doc_rej["copy"].detail
    assert doc_rej["huge"].record["text"] == rows[4]["text"]  # nothing lost
    assert "'fi'" in doc_rej["declared_fi"].detail

    by_reason = Counter((x.doc_id, x.reason) for x in chunk_rej)
    assert by_reason == {("swahili", "language_mismatch"): 1, ("near", "near_duplicate"): 1,
                         ("mixed", "language_mismatch"): 1}
    sw = next(x for x in chunk_rej if x.doc_id == "swahili")
    assert "detected sw" in sw.detail and "swahili" in sw.detail and "expected id" in sw.detail
    near = next(x for x in chunk_rej if x.doc_id == "near")
    assert "single" in near.detail and "near" in near.detail

    # accounting: every input document exactly once, either rejected whole or chunked
    chunked = {x.doc_id for x in records} | {x.doc_id for x in chunk_rej}
    assert not chunked & set(doc_rej)
    expected = {r["id"] if isinstance(r, dict) else "corpus.jsonl:3" for r in rows}
    assert chunked | set(doc_rej) == expected
    for doc_id in chunked:
        items = [x for x in records if x.doc_id == doc_id] + [x for x in chunk_rej if x.doc_id == doc_id]
        n = {x.n_chunks if isinstance(x, Record) else x.record["n_chunks"] for x in items}
        assert n == {len(items)}
        ids = [x.id for x in items]
        assert len(set(ids)) == len(ids)

    multi = [r for r in records if r.doc_id == "multi"]
    assert len(multi) > 3 and [r.id for r in multi] == [f"multi#{i}" for i in range(len(multi))]
    assert all(r.lang == "id" and r.text == r.response and len(r.text) <= 900 for r in multi)
    assert all(r.source == f"{p}:1" for r in multi)
    single = next(r for r in records if r.doc_id == "single")
    assert single.id == "single" and single.n_chunks == 1 and single.meta == {"url": "http://a"}
    assert single.history[0]["langid"]["backend"] == "py3langid"


def test_chunk_limit_rejects_the_rest() -> None:
    text = "\n\n".join(_id_para(i, 4) for i in range(10))
    out = _run([_doc("d", text)], {"id"}, chunk_chars=300, max_chunk_chars=400, max_chunks_per_doc=3,
               dedup=False)
    assert [type(x).__name__ for x in out][:3] == ["Record"] * 3
    rest = out[3:]
    assert rest and all(isinstance(x, Reject) and x.reason == "chunk_limit" for x in rest)
    assert all(x.record["n_chunks"] == len(out) for x in rest)
    assert "d#3" in rest[0].detail and "max_chunks_per_doc=3" in rest[0].detail


def test_language_rules_with_several_targets_and_with_all() -> None:
    docs = [_doc("i", _id_para(0, 4)), _doc("s", SW_TEXT), _doc("f", FI_TEXT), _doc("x", "1234 5678 " * 10)]
    out = _run(docs, {"id", "sw"})
    assert {x.doc_id: x.lang for x in out if isinstance(x, Record)} == {"i": "id", "s": "sw"}
    f = next(x for x in out if x.doc_id == "f")
    assert isinstance(f, Reject) and f.reason == "not_target_language" and "detected language fi" in f.detail
    x = next(x for x in out if x.doc_id == "x")
    assert x.reason == "not_target_language" and "no letters" in x.detail

    out = _run(docs[:3], None)
    assert {x.doc_id: x.lang for x in out if isinstance(x, Record)} == {"i": "id", "s": "sw", "f": "fi"}


def test_indonesian_detected_as_malay_is_kept_as_indonesian() -> None:
    text = ID_SENTENCES[3] + " " + ID_SENTENCES[16]  # both read as Malay by py3langid
    [rec] = _run([_doc("d", text)], {"id", "th"})
    assert isinstance(rec, Record) and rec.lang == "id" and rec.history[0]["langid"]["detected"] == "ms"


def test_thai_document_is_chunked() -> None:
    text = "\n".join(" ".join(TH_SENTENCES[i:] + TH_SENTENCES[:i]) for i in range(6))
    out = _run([_doc("th1", text)], {"th"}, chunk_chars=300, max_chunk_chars=400, dedup=False)
    assert len(out) > 1 and all(isinstance(x, Record) and x.lang == "th" for x in out)
    assert _squash("".join(x.text for x in out)) == _squash(text)


def test_unsupported_target_fails_up_front() -> None:
    with pytest.raises(ValueError, match="lingua"):
        prepare(iter(()), {"xx"}, PrepareConfig())
    with pytest.raises(ValueError, match="max_chars"):
        prepare(iter(()), {"id"}, PrepareConfig(chunk_chars=3000, max_chunk_chars=2000))


def test_prepare_streams() -> None:
    def endless():
        for i in itertools.count():
            yield _doc(f"d{i}", _id_para(i, 3))

    first = list(itertools.islice(prepare(endless(), {"id"}, PrepareConfig(dedup=False)), 5))
    assert [x.doc_id for x in first] == ["d0", "d1", "d2", "d3", "d4"]


def test_reader_rejects_pass_through() -> None:
    r = Reject(stage="read", reason="malformed_json", detail="x:1: bad", unit="document", doc_id="x:1")
    assert _run([r], {"id"}) == [r]
