#!/usr/bin/env python3
"""Synthetic training data for the judgeq testbed model (pure Python + numpy + sentencepiece).

Every sample is built at token level from "units" (sentences, needles, questions, answers) that are
encoded separately.  A unit is encoded as if preceded by a single space (sentencepiece's dummy prefix),
or, when it starts with "\n", glued to the previous unit without a space.  Joining units this way gives
the same ids as encoding the whole text at once (the tokenizer splits words at spaces only), so the model
trains on canonical tokenizations and the sample length can be set exactly.

The tasks are deliberately NOT the evaluation tasks (RULER / Needle-in-a-Haystack):
  * other sentence frames, key formats, value formats, question wordings, intros and answer prefixes;
  * never the RULER templates, the "special magic" wording, RULER's noise sentences, the VT "VAR X = VAR Y"
    syntax, the San Francisco needle, or Paul Graham essays (haystacks come from Gutenberg, Shakespeare,
    State of the Union / Inaugural addresses, and synthetic noise).

Families
  A  key-value retrieval: 1..N keys hidden in a haystack, each with 1..5 values; 1..k question blocks
     (single key / all values of a key / several keys at once), answers supervised.
  B  variable chains: assignment chains in 14 syntaxes among distractor chains; "which variables hold V?"
  C  fact sentences: "The <superlative> <thing> <place> is <predicate>." hidden in prose; the question
     asks about the subject; the answer copies the whole sentence.
  D  plain language-model text.
Token kinds (per target token): 0 = context (small LM weight), 1 = kv single answer, 2 = kv multi answer,
3 = chain answer, 4 = fact answer, 5 = ignore.
"""
import json, os, random, string

import numpy as np

KIND_CTX, KIND_KV1, KIND_KVM, KIND_VT, KIND_FACT, KIND_IGN = 0, 1, 2, 3, 4, 5

# Recipe version.  "v1" = the data of the first full H200 run (RULER NIAH tasks 96-100, NIAH 8.19, VT 3.2);
# "v2" (default) adds keyword-prefixed assignment syntaxes ("REG X := REG Y", to fix VT) and ends every
# answer block with EOS (so that the model stops after answering; NIAH precision).
RECIPE = os.environ.get("TESTBED_RECIPE", "v3")

# ----------------------------------------------------------------------------------------------------
# word pools (hand-written; RULER's wonderwords lists are evaluation-only and never used here)
FIRST = ("Ada Alma Anton Arlo Ayla Basil Bea Boris Bruno Cara Cecil Clara Colm Dara Dmitri Edda Edgar Elena "
         "Elio Emil Enzo Esme Ezra Fern Flora Gideon Greta Hana Hugo Ida Ines Ivo Jonas Juno Kai Kira Lars "
         "Lena Leon Lina Lorenzo Luca Mabel Marta Mateo Milo Mina Nadia Nico Nils Nora Olga Omar Oona Otto "
         "Pia Priya Quinn Rafael Rhea Rosa Rufus Saul Selma Silas Sofia Tariq Tess Theo Ugo Una Vera Viktor "
         "Wanda Wren Xavier Yara Yusuf Zara Zeno Agnes Bram Cyrus Dalia Egon Frida Gus Hilde Imre Jasper").split()
LAST = ("Abbott Alvarez Baker Barros Becker Blom Brandt Castillo Chen Costa Dahl Diaz Dubois Eriksen Falk "
        "Ferreira Fischer Garcia Gray Haas Hale Hansen Ito Jansen Kaur Keller Kim Kowalski Lam Larsen Lund "
        "Marsh Meyer Moreau Nakamura Novak Okafor Olsen Ortega Park Patel Pereira Quint Reyes Rossi Sato "
        "Schmidt Silva Stone Strand Tanaka Torres Ueda Vance Varga Vogel Walsh Weber Wolff Yilmaz Young "
        "Zeller Zhou Adler Bishop Crane Drake Ellis Frost Gale Holt Irwin Knox Lowe Moss Nash Pike Reed").split()
PLACES = ("Lisbon|Oslo|Kyoto|Nairobi|Lima|Quito|Hanoi|Tunis|Dublin|Krakow|Porto|Tallinn|Riga|Vilnius|Bergen|"
          "Seville|Naples|Verona|Lyon|Ghent|Utrecht|Basel|Graz|Brno|Zagreb|Varna|Izmir|Tbilisi|Baku|Almaty|"
          "Tashkent|Lahore|Kandy|Penang|Cebu|Hobart|Perth|Dunedin|Nelson|Halifax|Quebec|Winnipeg|Denver|Tucson|"
          "Boise|Omaha|Memphis|Savannah|Mobile|Tampa|Havana|Cusco|Salta|Mendoza|Recife|Belem|Manaus|Dakar|Accra|"
          "Lagos|Kumasi|Mombasa|Arusha|Zanzibar|Durban|Windhoek|Muscat|Petra|Aqaba|Luxor|Aswan|Fez|Tangier|"
          "Agadir|Valletta|Split|Kotor|Ohrid|Sibiu|Cluj|Lviv|Odesa|Minsk|Turku|Tromso|Reykjavik|Akureyri|Galway|"
          "Cork|York|Bath|Oxford|Bruges|Trier|Bonn|Kassel|Erfurt|Dresden|Leipzig|Marrow Vale|Port Elmsby|"
          "New Tarrin|Kessel Bay|Old Harwick|Lake Orrin|Fenmoor|Greywater|Ashcombe|Redcliff|Saltmere|"
          "Brindle Cross|Eastwick Hollow|Larkspur|Thornbury|Millbrook|Stonehaven|the old harbour|the northern hills|"
          "the royal gardens|the river valley|the mountain villages").split("|")

TYPE_WORDS = ("code number value password pin id tag key token figure label serial ticket entry reference "
              "record combination answer passcode identifier mark sequence cipher digit-string").split()
TYPE_PLURAL = {"entry": "entries", "key": "keys", "passcode": "passcodes"}
ADJ_WORDS = ("secret hidden private assigned registered lucky official stored recorded unique personal archived "
             "correct current given listed coded mysterious important reserved true chosen").split()
NOISE_SENTS = ("The river is wide.|The hills are quiet.|Birds fly over the field.|The road goes on.|"
               "Rain falls in the valley.|The lamp is lit.|Clouds drift by.|The wind is cold.|"
               "A dog barks far away.|The bread is warm.|Time passes slowly.|Nothing happens here.|"
               "Waves touch the shore.|The door stays shut.|Leaves turn brown.|The clock ticks.|"
               "Snow covers the roofs.|The tea is hot.|A cart rolls past.|Stars come out at night.|"
               "The well is deep.|Smoke rises from the chimney.|The path is muddy.|A bell rings once.|"
               "The fields are wet.|The market is busy.|The stone is heavy.|Ice forms on the pond.|"
               "The candle burns low.|A ship waits in the harbor.|The garden is still.|Frogs sing at dusk.").split("|")
FACT_SUBJECTS = [
    "the best thing to eat in {P}", "the best way to spend a rainy afternoon in {P}",
    "the safest route through {P}", "the most important rule at the market of {P}",
    "the oldest tradition of {P}", "my favourite thing about {P}", "the quickest way to reach {P}",
    "the strangest custom in {P}", "the cheapest thing to buy in {P}", "the best time to visit {P}",
    "the first thing to see in {P}", "the secret of the cooks of {P}", "the best place to read in {P}",
    "the nicest walk near {P}", "the loudest festival in {P}", "the best gift to bring from {P}",
    "the hardest job in {P}", "the most useful advice for travellers in {P}",
    "the best way to make friends in {P}", "the most surprising fact about {P}",
    "the best song to sing in {P}", "the right way to greet people in {P}",
]
FACT_QUESTIONS = ["What is {S}?", "According to the text, what is {S}?", "Tell me {S}.",
                  "Based on the passage above, what is {S}?", "Do you know {S}?", "What did the text say is {S}?",
                  "In the document, what is {S}?", "Question: what is {S}?", "Can you recall {S}?"]

VT_SYNTAX = [  # (assign value, assign from variable)  {n}=new name, {o}=old name, {v}=value
    ("let {n} := {v}", "let {n} := {o}"), ("{n} <- {v}", "{n} <- {o}"), ("set {n} to {v}", "set {n} to {o}"),
    ("{v} is stored in {n}", "{o} is copied into {n}"), ("{n} takes the value {v}", "{n} takes the value of {o}"),
    ("int {n} = {v};", "int {n} = {o};"), ("assign {v} to {n}", "assign {o} to {n}"),
    ("define {n} as {v}", "define {n} as {o}"), ("{n} := {v}", "{n} := {o}"), ("{n} is set to {v}", "{n} is set to {o}"),
    ("our {n} equals {v}", "our {n} equals {o}"), ("mov {n}, {v}", "mov {n}, {o}"),
    ("the value of {n} is {v}", "the value of {n} is the value of {o}"), ("let {n} = {v};", "let {n} = {o};"),
]
# keyword-prefixed forms "KW X op v" / "KW X op KW Y": the model must learn that a keyword repeated on every
# line is not a variable name.  (RULER's "VAR" keyword is deliberately not in the list.)
VT_KEYWORDS = ["REG", "NODE", "KEY", "SLOT", "CELL", "PTR", "REF", "DEF", "OBJ", "ITEM", "BOX", "LET", "SET", "NUM",
               "reg", "node", "slot", "cell", "ptr", "ref", "obj", "item", "box", "num", "Reg", "Node", "Slot", "Cell"]
VT_OPS = ["=", ":=", "<-", "is", "IS", "gets", "=="]


def vt_keyword(r):
    """v3: half of the keywords are random letter strings, so that the rule learnt is "a word repeated in front
    of every name is not a name" rather than a fixed list (never "VAR"/"var", RULER's keyword)."""
    if RECIPE in ("v1", "v2") or r.random() < 0.5:
        return r.choice(VT_KEYWORDS)
    while True:
        kw = "".join(r.choice(string.ascii_uppercase) for _ in range(r.randint(2, 5)))
        kw = r.choice([kw, kw, kw.lower(), kw.capitalize()])
        if kw.upper() != "VAR":
            return kw


def vt_syntax(r):
    if RECIPE == "v1" or r.random() < 0.5:
        return r.choice(VT_SYNTAX)
    kw, op = vt_keyword(r), r.choice(VT_OPS)
    src = (kw + " {o}") if r.random() < 0.75 else "{o}"
    return (kw + " {n} " + op + " {v}", kw + " {n} " + op + " " + src)


VT_QUESTIONS = ["Which variables end up holding {v}?", "List every variable whose value is {v}.",
                "Track the assignments: which variables hold {v} at the end?", "What variables carry the value {v}?",
                "Name all variables equal to {v} after the statements above.", "Which names have the value {v}?",
                "Follow the chain of assignments. Which variables are equal to {v}?"]
VT_PREFIXES = ["", "Answer:", "The variables holding {v} are", "Answer: following the statements above, {N} variables hold {v}:",
               "They are:", "{N} names hold {v}, namely", "Answer: {N} variables carry {v}, namely",
               "Following every assignment, the names equal to {v} are:"]
NEEDLE_FRAMES = [
    "The {a} {t} for {k} reads {v}.", "{k} -> {v}", "Remember: {k}'s {t} is {v}.", "{k}: {v}",
    "Note that the {t} of {k} is {v}.", "In the ledger, {k} is listed with {t} {v}.", "{T} for {k}: {v}.",
    "Keep in mind that {k} stores the {t} {v}.", "The {a} {t} attached to {k} is {v}.", "[{k}] {v}",
    "Entry {k} has {t} {v}.", "{k} was paired with {v}.", "When asked about {k}, reply {v}.",
    "record: key={k}; {t}={v}", "The {t} that belongs to {k} is {v}.",
    "Please write down the {a} {t} for {k}, which is {v}.", "It is known that {k} carries the {t} {v}.",
    "{k} => {v}", "{k} | {v}", "Item \"{k}\" maps to {v}.", "For {k} the {a} {t} is {v}, do not forget it.",
    "Our {t} for {k} turned out to be {v}.", "I was told the {t} of {k} is {v}.", "Memo: {k} = {v}.",
    "{k} ({t}): {v}", "Locker {k} holds {v}.", "The {a} {t} assigned to {k} happens to be {v}.",
    "Attention: {k} now uses {t} {v}.", "The access code for {k} reads {v}.", "Remember: {k}'s locker holds {v}.",
    "By the way, {k} has the {a} {t} {v}.", "A {t} worth remembering: {k} is {v}.", "{k} ... {v}",
    "Among the {a} {t}s, the one for {k} is {v}.",
]
Q_SINGLE = ["What is the {t} for {k}?", "Which {t} belongs to {k}?", "Tell me the {a} {t} of {k}.",
            "What {t} was given for {k} in the text above?", "Look up {k}.", "Find the {t} of {k}.", "{k}?",
            "What is the {a} {t} associated with {k} in the document?", "Question: what is the {t} for {k} mentioned above?",
            "Recall the {t} that goes with {k}.", "What did the text say the {t} of {k} is?",
            "Give the {a} {t} for {k} from the passage.", "Which {a} {t} is listed for {k} in the notes above?",
            "What is the {a} {t} for {k} in the text you just read?", "Do you remember the {t} of {k}?"]
A_SINGLE = ["", "Answer:", "A:", "The {t} for {k} is", "The {a} {t} of {k} mentioned above is", "{k}:", "It is",
            "The {t} is", "The {a} {t} for {k} given in the document is", "Sure, the {t} for {k} is", "{k} ->",
            "Answer: the {t} of {k} is", "The {a} {t} associated with {k} in the text is"]
Q_MULTIV = ["List all {t}s for {k}.", "What are all the {a} {t}s for {k} in the text?", "Which {t}s were given for {k}?",
            "Name every {t} that belongs to {k}.", "{k} has several {t}s. What are they?",
            "What are the {a} {t}s of {k} mentioned in the document?", "Give all the {t}s listed for {k}.",
            "Recall each {a} {t} that goes with {k}."]
A_MULTIV = ["", "Answer:", "The {t}s for {k} are", "The {a} {t}s of {k} mentioned above are", "{k}:", "They are",
            "The {a} {t}s associated with {k} in the text are", "Answer: the {t}s of {k} are"]
Q_MULTIQ = ["What are the {t}s for {K}?", "Give the {a} {t}s of {K}.", "Look up {K}.",
            "Which {t}s belong to {K}?", "Tell me the {a} {t}s for {K} from the text.",
            "What are all the {a} {t}s for {K} mentioned above?", "Recall the {t}s of {K}."]
A_MULTIQ = ["", "Answer:", "The {t}s for {K} are", "The {a} {t}s for {K} mentioned in the document are",
            "They are", "Answer: the {t}s of {K} are", "The {a} {t}s of {K} given in the text are"]
INTRO_1 = ["Some {a} {t}s are hidden in the following document.", "The text below contains several {a} {t}s.",
           "Read the passage carefully; it includes {a} {t}s.", "Below is a long text with a few {t}s scattered inside.",
           "A {a} {t} is buried somewhere in this text.", "Memorize every {t} you find in the following notes.",
           "Here is a document. Pay attention to the {t}s.", "Several {t}s appear in the text that follows.",
           "The following notes mention some {a} {t}s.", "Find and remember the {t}s in this text."]
INTRO_2 = ["", "Make sure to remember them.", "You will be asked about them afterwards.",
           "Keep them in mind, questions follow.", "I will quiz you at the end.", "Try to memorize each one.",
           "Questions about them come after the text."]
FACT_INTROS = ["Read the following text.", "Here is a document:", "Story:", "[TEXT]", "<doc>", "Passage:",
               "Please read this long text and answer the question at the end.", "Below is an old book chapter.",
               "Notes from a traveller:", "Document begins."]
FACT_OUTROS = ["", "[/TEXT]", "</doc>", "End of the passage.", "Document ends.", "(end of text)"]
FACT_QBLOCK = ["\nQuestion: {q}\nAnswer:", "\nQ: {q}\nA:", "\n{q}\nAnswer:", "\nBased on the text above, answer the question. {q}\nAnswer:",
               "\nNow answer: {q}", "\nUsing only the document, {ql}\nAnswer:", "\nRead again and answer. Question: {q}\nThe answer:"]
VALUE_WORD_SEPS = [(", ", ", and "), (", ", " and "), ("; ", "; "), (", ", ", "), (" ", " "), (" / ", " / ")]


def _plural(t):
    return TYPE_PLURAL.get(t, t + "s")


class Tok:
    def __init__(self, model_path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        ids = self.sp.encode("a")
        assert len(ids) == 1
        self.a_id = ids[0]
        self.bos, self.eos = self.sp.bos_id(), self.sp.eos_id()
        self.vocab = self.sp.get_piece_size()
        self.nl = self.unit("\n")

    def unit(self, text):
        """Token ids of `text` as it appears after a space (or glued to the previous unit if it starts
        with a newline)."""
        if text.startswith("\n"):
            ids = self.sp.encode("a" + text)
            assert ids[0] == self.a_id
            return ids[1:]
        return self.sp.encode(text)

    def decode(self, ids):
        return self.sp.decode([int(i) for i in ids])


class Corpus:
    """Pre-tokenized filler sentences (built by prep_corpus.py tokens)."""

    def __init__(self, npz_path):
        z = np.load(npz_path)
        self.toks, self.offs = z["toks"], z["offs"]
        self.para_start, self.doc = z["para_start"], z["doc"]
        self.nl_toks, self.nl_offs = z["nl_toks"], z["nl_offs"]
        self.nl_of = {int(s): i for i, s in enumerate(z["nl_index"])}
        self.n = len(self.para_start)

    def sent(self, i, nl=False):
        if nl and i in self.nl_of:
            j = self.nl_of[i]
            return self.nl_toks[self.nl_offs[j]:self.nl_offs[j + 1]].tolist()
        return self.toks[self.offs[i]:self.offs[i + 1]].tolist()


class Gen:
    def __init__(self, tok, corpus, words):
        self.tok, self.c = tok, corpus
        self.words = [w for w in words if 3 <= len(w) <= 10]
        self.short_words = [w for w in self.words if len(w) <= 7]

    # ------------------------------------------------------------------ atoms
    def key(self, r, kind):
        w = self.words
        if kind == "word":
            return r.choice(w)
        if kind == "pair":
            return r.choice(w) + " " + r.choice(w)
        if kind == "triple":
            return "the " + r.choice(w) + " " + r.choice(w)
        if kind == "name":
            return r.choice(FIRST) + " " + r.choice(LAST)
        if kind == "first":
            return r.choice(FIRST)
        if kind == "code":
            L = string.ascii_uppercase
            f = r.randrange(4)
            if f == 0:
                return "".join(r.choice(L) for _ in range(2)) + "-" + str(r.randrange(10, 999))
            if f == 1:
                return "unit " + str(r.randrange(2, 99)) + r.choice(L)
            if f == 2:
                return "".join(r.choice(L) for _ in range(r.randint(3, 5)))
            return r.choice(w).upper()[:6] + str(r.randrange(1, 9))
        if kind == "under":
            return r.choice(w) + r.choice("_.") + r.choice(w)
        if kind == "cap":
            x = r.choice(w)
            return x[0].upper() + x[1:]
        if kind == "camel":
            a, b = r.choice(w), r.choice(w)
            return a[0].upper() + a[1:] + b[0].upper() + b[1:]
        raise ValueError(kind)

    KEY_KINDS = (("word", 22), ("pair", 20), ("name", 14), ("first", 4), ("code", 10), ("under", 10),
                 ("cap", 6), ("triple", 6), ("camel", 8))

    def key_kind(self, r):
        return r.choices([k for k, _ in self.KEY_KINDS], [w for _, w in self.KEY_KINDS])[0]

    def value(self, r, kind, ndig=None):
        if kind == "digits":
            n = ndig or r.randint(2, 10)
            s = str(r.randint(1, 9)) + "".join(r.choice("0123456789") for _ in range(n - 1))
            return s
        if kind == "hex":
            return "".join(r.choice("0123456789abcdef") for _ in range(r.randint(4, 10)))
        if kind == "word":
            return r.choice(self.words)
        if kind == "phrase":
            return " ".join(r.choice(self.short_words) for _ in range(r.randint(2, 3)))
        if kind == "code":
            L = string.ascii_uppercase
            return "".join(r.choice(L + "0123456789") for _ in range(r.randint(3, 6))) + "-" + str(r.randrange(10, 99))
        if kind == "decimal":
            return str(r.randint(0, 999)) + "." + str(r.randint(0, 99)).zfill(2)
        raise ValueError(kind)

    VAL_KINDS = (("digits", 58), ("hex", 10), ("word", 12), ("phrase", 7), ("code", 8), ("decimal", 5))

    def val_kind(self, r):
        return r.choices([k for k, _ in self.VAL_KINDS], [w for _, w in self.VAL_KINDS])[0]

    @staticmethod
    def join_list(r, items, seps=None):
        s, last = seps or r.choice(VALUE_WORD_SEPS)
        if len(items) == 1:
            return items[0]
        return s.join(items[:-1]) + last + items[-1]

    # ------------------------------------------------------------------ haystacks
    def haystack_essay(self, r, n_tokens, n_slots, para_style):
        """Filler sentences of exactly n_tokens tokens; returns list of chunks (token lists) between which
        n_slots insertion points are chosen uniformly among sentence boundaries."""
        c = self.c
        s = r.randrange(c.n)
        sents, tot = [], 0
        i = s
        first = True
        while tot < n_tokens:
            if i >= c.n:
                i = 0
            ids = c.sent(i, nl=(para_style and c.para_start[i] and not first))
            first = False
            sents.append(ids)
            tot += len(ids)
            i += 1
        over = tot - n_tokens
        if over:
            sents[-1] = sents[-1][:len(sents[-1]) - over]
            if not sents[-1]:
                sents.pop()
        return sents

    def noise_lines(self, r, n_tokens):
        if r.random() < 0.6:  # one line repeated
            line = " ".join(r.sample(NOISE_SENTS, r.randint(3, 6)))
            first, rest = self.tok.unit(line), self.tok.unit("\n" + line)
            out, tot = [first], len(first)
            while tot < n_tokens:
                out.append(rest)
                tot += len(rest)
        else:
            out, tot = [], 0
            while tot < n_tokens:
                line = " ".join(r.sample(NOISE_SENTS, r.randint(1, 5)))
                ids = self.tok.unit(("\n" if out else "") + line)
                out.append(ids)
                tot += len(ids)
        over = tot - n_tokens
        if over:
            out[-1] = out[-1][:len(out[-1]) - over]
            if not out[-1]:
                out.pop()
        return out

    def kv_lines(self, r, n_tokens, avoid):
        frame = r.choice(NEEDLE_FRAMES)
        kk, vk = self.key_kind(r), self.val_kind(r)
        t, a = r.choice(TYPE_WORDS), r.choice(ADJ_WORDS)
        out, tot = [], 0
        miss = 0
        while tot < n_tokens:
            k = self.key(r, kk)
            if any(k in x or x in k for x in avoid):
                miss += 1
                if miss > 1000:  # every key of this kind clashes with a real key (e.g. key "the", "the x y")
                    return self.noise_lines(r, n_tokens)
                continue
            s = self.fill(frame, k, self.value(r, vk), t, a)
            ids = self.tok.unit(("\n" if out else "") + s)
            out.append(ids)
            tot += len(ids)
        over = tot - n_tokens
        if over:
            out[-1] = out[-1][:len(out[-1]) - over]
            if not out[-1]:
                out.pop()
        return out

    def word_list(self, r, n_tokens):
        out, tot = [], 0
        while tot < n_tokens:
            ids = self.tok.unit(" ".join(r.choice(self.words) for _ in range(8)))
            out.append(ids)
            tot += len(ids)
        over = tot - n_tokens
        if over:
            out[-1] = out[-1][:len(out[-1]) - over]
            if not out[-1]:
                out.pop()
        return out

    def haystack(self, r, n_tokens, hay_kind, avoid=()):
        if n_tokens <= 0:
            return []
        if hay_kind == "essay":
            return self.haystack_essay(r, n_tokens, 0, r.random() < 0.4)
        if hay_kind == "noise":
            return self.noise_lines(r, n_tokens)
        if hay_kind == "kv":
            return self.kv_lines(r, n_tokens, avoid)
        if hay_kind == "words":
            return self.word_list(r, n_tokens)
        raise ValueError(hay_kind)

    @staticmethod
    def fill(tmpl, k="", v="", t="", a="", K="", P="", S="", q="", N=""):
        return (tmpl.replace("{k}", k).replace("{t}s", _plural(t)).replace("{v}", v).replace("{T}", t[:1].upper() + t[1:])
                .replace("{t}", t).replace("{a}", a).replace("{K}", K).replace("{P}", P).replace("{S}", S)
                .replace("{q}", q).replace("{N}", N))

    @staticmethod
    def insert(chunks, items, r, order_kept=True):
        """Insert item token lists between chunks at random boundaries (uniform over 0..len(chunks)).
        Items keep their order."""
        pos = sorted(r.randint(0, len(chunks)) for _ in items)
        out, j = [], 0
        for i in range(len(chunks) + 1):
            while j < len(items) and pos[j] == i:
                out.append(items[j])
                j += 1
            if i < len(chunks):
                out.append(chunks[i])
        return out

    # ------------------------------------------------------------------ assembly
    @staticmethod
    def trim(chunks, n):
        """Cut the chunk list so that it holds exactly n tokens (n <= current total)."""
        tot = sum(len(x) for x in chunks)
        over = tot - n
        assert over >= 0
        while over > 0 and chunks:
            if len(chunks[-1]) <= over:
                over -= len(chunks[-1])
                chunks.pop()
            else:
                chunks[-1] = chunks[-1][:len(chunks[-1]) - over]
                over = 0
        return chunks

    def glue_first(self, chunks, prefix="\n"):
        """Make the first haystack chunk start on a new line ("\nWord" instead of " Word")."""
        if chunks:
            txt = self.tok.decode(chunks[0]).lstrip("\n")
            chunks[0] = self.tok.unit(prefix + txt) if txt else self.tok.unit(prefix)
        return chunks

    def assemble(self, L, pre, hay_kind, needles, post, r, newline_needles, avoid=(), nl_after_pre=True,
                 need_ids=None, glue_prefix="\n"):
        """pre/post: list of (ids, kind); needles: list of texts inserted into the haystack in order.
        The haystack starts on a new line after `pre` when nl_after_pre.  Returns (ids, kinds) with
        exactly L+1 tokens, or None if the fixed parts do not fit."""
        tok = self.tok
        if need_ids is None:
            need_ids = [tok.unit(("\n" if newline_needles else "") + n) for n in needles]
        fixed = 1 + sum(len(x) for x, _ in pre) + sum(len(x) for x in need_ids) + sum(len(x) for x, _ in post)
        H = L + 1 - fixed
        if H < (8 if (pre and nl_after_pre) else 0):
            return None
        if H > 0:
            chunks = self.haystack(r, H + 6, hay_kind, avoid)
            if pre and nl_after_pre:
                chunks = self.glue_first(chunks, glue_prefix)
            chunks = self.trim(chunks, H)
        else:
            chunks = []
        body = self.insert(chunks, need_ids, r)
        ids, kinds = [tok.bos], [KIND_CTX]
        for x, k in pre:
            ids += x
            kinds += [k] * len(x)
        for x in body:
            ids += x
        kinds += [KIND_CTX] * (len(ids) - len(kinds))
        for x, k in post:
            ids += x
            kinds += [k] * len(x)
        if len(ids) != L + 1:
            return None
        return ids, kinds

    # ------------------------------------------------------------------ family A: key-value retrieval
    def family_kv(self, r, L, dense):
        tok = self.tok
        for attempt in range(8):
            if dense:
                cap = max(2, min(32, (L - 30) // 20))
                n_keys = r.randint(max(2, cap // 3), cap)
            else:
                n_keys = r.choice(KEY_COUNTS_V4 if RECIPE == "v4" else KEY_COUNTS)
            n_keys = max(1, n_keys >> attempt)
            kk = self.key_kind(r) if r.random() < 0.8 else None
            vk = self.val_kind(r) if r.random() < 0.8 else None
            ndig = r.randint(2, 10) if (vk == "digits" and r.random() < 0.7) else None
            keys = []
            tries = 0
            while len(keys) < n_keys and tries < 200:
                tries += 1
                k = self.key(r, kk or self.key_kind(r))
                if any(k in x or x in k for x in keys):
                    continue
                keys.append(k)
            n_keys = len(keys)
            # values per key: mostly 1; some keys get 2..5 values
            multi_p = 0.25 if r.random() < 0.5 else 0.0
            nvals = [r.choice([2, 2, 3, 3, 4, 4, 5]) if r.random() < multi_p else 1 for _ in keys]
            if n_keys == 1 and r.random() < 0.3:
                nvals[0] = r.randint(2, 5)
            vals, seen = [], set()
            for nv in nvals:
                vs = []
                miss = 0
                while len(vs) < nv:
                    # (bounded: a small value space, e.g. 2-digit values for 32 keys, falls back to 10 digits)
                    v = self.value(r, vk or self.val_kind(r), ndig) if miss < 100 else self.value(r, "digits", 10)
                    if v in seen or any(v in k for k in keys):
                        miss += 1
                        continue
                    seen.add(v)
                    vs.append(v)
                vals.append(vs)
            same_frame = r.random() < 0.8
            frame0 = r.choice(NEEDLE_FRAMES)
            t, a = r.choice(TYPE_WORDS), r.choice(ADJ_WORDS)
            needles = []
            for k, vs in zip(keys, vals):
                for v in vs:
                    fr = frame0 if same_frame else r.choice(NEEDLE_FRAMES)
                    needles.append((k, self.fill(fr, k, v, t, a), v))
            r.shuffle(needles)
            # values of each key in order of appearance in the text
            pos_of = {}
            for i, (k, _s, v) in enumerate(needles):
                pos_of[(k, v)] = i
            vals_in_order = [sorted(vs, key=lambda v, k=k: pos_of[(k, v)]) for k, vs in zip(keys, vals)]
            # question blocks
            tq = t if r.random() < 0.5 else r.choice(TYPE_WORDS)
            aq = a if r.random() < 0.5 else r.choice(ADJ_WORDS)
            max_q = 8 if dense else 4
            n_q = r.randint(1, min(max_q, max(1, n_keys)))
            if not dense and r.random() < 0.5:
                n_q = 1
            post = []
            qkeys = r.sample(range(n_keys), min(n_keys, n_q))
            used = 0
            blocks = []
            for qi in qkeys:
                mode = "single" if nvals[qi] == 1 else "multiv"
                if mode == "single" and n_keys >= 2 and r.random() < 0.25:
                    mode = "multiq"
                blocks.append((mode, qi))
            for bi, (mode, qi) in enumerate(blocks):
                tq2 = tq if r.random() < 0.7 else r.choice(TYPE_WORDS)
                if mode == "single":
                    k = keys[qi]
                    q = self.fill(r.choice(Q_SINGLE), k=k, t=tq2, a=aq)
                    p = self.fill(r.choice(A_SINGLE), k=k, t=tq2, a=aq)
                    ans = vals_in_order[qi][0]
                    kind = KIND_KV1
                elif mode == "multiv":
                    k = keys[qi]
                    q = self.fill(r.choice(Q_MULTIV), k=k, t=tq2, a=aq)
                    p = self.fill(r.choice(A_MULTIV), k=k, t=tq2, a=aq)
                    ans = self.join_list(r, vals_in_order[qi])
                    kind = KIND_KVM
                else:
                    m = r.randint(2, min(5, n_keys))
                    sel = [qi] + r.sample([j for j in range(n_keys) if j != qi and nvals[j] == 1], min(m - 1, sum(1 for j in range(n_keys) if j != qi and nvals[j] == 1)))
                    if len(sel) < 2:
                        mode = "single"
                        k = keys[qi]
                        q = self.fill(r.choice(Q_SINGLE), k=k, t=tq2, a=aq)
                        p = self.fill(r.choice(A_SINGLE), k=k, t=tq2, a=aq)
                        ans = vals_in_order[qi][0]
                        kind = KIND_KV1
                    else:
                        seps = r.choice(VALUE_WORD_SEPS[:4])
                        K = self.join_list(r, [keys[j] for j in sel], seps)
                        q = self.fill(r.choice(Q_MULTIQ), K=K, t=tq2, a=aq)
                        p = self.fill(r.choice(A_MULTIQ), K=K, t=tq2, a=aq)
                        if r.random() < 0.4:
                            f = r.choice(["{k}: {v}", "{k} is {v}", "{k} -> {v}", "for {k} it is {v}"])
                            ans = self.join_list(r, [self.fill(f, k=keys[j], v=vals_in_order[j][0]) for j in sel], (", ", ", and ") if r.random() < 0.5 else ("; ", "; "))
                        else:
                            ans = self.join_list(r, [vals_in_order[j][0] for j in sel])
                        kind = KIND_KVM
                if r.random() < 0.4:
                    ans = ans + "."
                sep = r.choice(["\n", "\n", " "]) if p else " "
                qtext = ("\n" if (bi == 0 or r.random() < 0.8) else "\n\n") + q
                if p:
                    qtext = qtext + sep + p if sep == " " else qtext
                post.append((tok.unit(qtext), KIND_CTX))
                if p and sep == "\n":
                    post.append((tok.unit("\n" + p), KIND_CTX))
                post.append((tok.unit(ans), kind))
                # v2: every answer ends with EOS (also when more question blocks follow), so that the model
                # stops after answering instead of inventing a next question
                last = bi == len(blocks) - 1
                if RECIPE == "v1" and not last:
                    post.append((tok.unit("\n"), KIND_CTX))
                else:
                    post.append(([tok.eos], kind))
            # intro
            pre = []
            if r.random() < 0.75:
                it = self.fill(r.choice(INTRO_1), t=tq, a=aq)
                i2 = r.choice(INTRO_2)
                pre.append((tok.unit(it + (" " + i2 if i2 else "")), KIND_CTX))
            if dense:
                hay = r.choice(["none", "none", "essay", "noise", "words"])
            else:
                hay = r.choices(["essay", "noise", "kv", "words"], HAY_KV_V4 if RECIPE == "v4" else HAY_KV)[0]
            newline_needles = r.random() < (0.7 if hay in ("noise", "kv", "none") else 0.3)
            if hay == "none":
                hay = r.choice(["noise", "words"])
            out = self.assemble(L, pre, hay, [s for _, s, _ in needles], post, r, newline_needles, avoid=keys)
            if out is not None:
                return out
        return None

    # ------------------------------------------------------------------ family B: variable chains
    def vt_names(self, r, n, style):
        names = set()
        out = []
        miss = 0
        while len(out) < n:
            if miss > 1000:
                style = "upper"
            if style == "upper":
                x = "".join(r.choice(string.ascii_uppercase) for _ in range(r.randint(3, 6)))
            elif style == "lower":
                x = "".join(r.choice(string.ascii_lowercase) for _ in range(r.randint(2, 6)))
            elif style == "word":
                x = r.choice(self.short_words)
            elif style == "idx":
                x = r.choice("xyzvtqpk") + str(r.randint(0, 99))
            else:
                x = r.choice(self.short_words) + "_" + str(r.randint(1, 9))
            if x in names or any(x in y or y in x for y in names):
                miss += 1
                continue
            names.add(x)
            out.append(x)
        return out

    def vt_block(self, r, L_hay, syn, style, n_chains, hops, dig, hay_kind, with_q, dense=False):
        """Return (pre_text_units, chains) pieces for one VT problem: list of (ids, kind)."""
        tok = self.tok
        chains = []
        names = self.vt_names(r, sum(h + 1 for h in hops), style)
        vals = set()
        pos = 0
        for c in range(n_chains):
            h = hops[c]
            nm = names[pos:pos + h + 1]
            pos += h + 1
            while True:
                v = str(r.randint(10 ** (dig - 1), 10 ** dig - 1))
                if v not in vals:
                    vals.add(v)
                    break
            st = [self.fill(syn[0].replace("{n}", nm[0]), v=v)]
            for j in range(h):
                st.append(syn[1].replace("{n}", nm[j + 1]).replace("{o}", nm[j]))
            end = r.choice(["", ".", ";"]) if not st[0].endswith(";") else ""
            st = [s + end for s in st]
            chains.append((v, nm, st))
        # interleave chains keeping order
        seq = []
        idx = [0] * n_chains
        while any(idx[c] < len(chains[c][2]) for c in range(n_chains)):
            c = r.choice([c for c in range(n_chains) if idx[c] < len(chains[c][2])])
            seq.append(chains[c][2][idx[c]])
            idx[c] += 1
        return chains, seq

    def family_vt(self, r, L, dense):
        tok = self.tok
        for attempt in range(6):
            syn = vt_syntax(r)
            style = r.choices(["upper", "lower", "word", "idx", "mix"], [40, 20, 20, 10, 10])[0]
            n_chains = r.choice([1, 1, 2, 2, 3]) if attempt < 3 else 1
            hops = [r.randint(1, 6 if attempt < 3 else 2) for _ in range(n_chains)]
            dig = r.randint(3, 7)
            hay = "none" if dense and r.random() < 0.5 else r.choices(["noise", "essay"], [0.55, 0.45])[0]
            chains, seq = self.vt_block(r, 0, syn, style, n_chains, hops, dig, hay, True)
            qc = r.randrange(n_chains)
            v, nm, _ = chains[qc]
            sep = r.choice([" ", ", ", ", "])
            ans = sep.join(nm) if sep != ", " or r.random() < 0.8 else self.join_list(r, nm, (", ", " and "))
            qt, pt = r.choice(VT_QUESTIONS), r.choice(VT_PREFIXES)
            q = self.fill(qt, v=v)
            p = self.fill(pt, v=v, N=str(len(nm)))
            same_line = r.random() < 0.5
            post = [(tok.unit("\n" + q + ((" " + p) if p and same_line else ("\n" + p if p else ""))), KIND_CTX),
                    (tok.unit(ans), KIND_VT), ([tok.eos], KIND_VT)]
            pre = []
            if r.random() < 0.6:
                pre.append((tok.unit(r.choice(["Track the variable assignments in the text below.",
                                                 "The following text hides a few assignment statements. Follow them carefully.",
                                                 "Read the program fragments hidden in the text and keep track of every variable.",
                                                 "Pay attention to the assignments below."])), KIND_CTX))
            # optional in-context example with its answer (same syntax, short, noise haystack)
            if (not dense) and r.random() < 0.4 and L >= 1024:
                ch2, seq2 = self.vt_block(r, 0, syn, style, 1, [r.randint(2, 5)], dig, "noise", True)
                v2, nm2, _ = ch2[0]
                ex_hay = self.noise_lines(r, r.randint(60, 250))
                if pre:
                    ex_hay = self.glue_first(ex_hay)
                ex_need = [tok.unit("\n" + s) for s in seq2]
                body = self.insert(ex_hay, ex_need, r)
                ex = []
                for x in body:
                    ex += x
                q2, p2 = self.fill(qt, v=v2), self.fill(pt, v=v2, N=str(len(nm2)))
                q2 = tok.unit("\n" + q2 + ((" " + p2) if p2 and same_line else ("\n" + p2 if p2 else "")))
                a2 = tok.unit(sep.join(nm2))
                pre = pre + [(ex, KIND_CTX), (q2, KIND_CTX), (a2, KIND_VT)]
                glue = "\n\n"
            else:
                glue = "\n"
            if hay == "none":
                hay = "noise"
            out = self.assemble(L, pre, hay, seq, post, r, newline_needles=(hay == "noise" or r.random() < 0.5),
                                glue_prefix=glue)
            if out is not None:
                return out
        return None

    # ------------------------------------------------------------------ family C: fact sentences
    def predicate(self, r):
        if r.random() < 0.5:
            # a clause cut out of a filler sentence
            for _ in range(20):
                s = self.tok.decode(self.c.sent(r.randrange(self.c.n)))
                w = s.split()
                if len(w) < 8:
                    continue
                st = r.randint(0, max(0, len(w) - 8))
                seg = w[st:st + r.randint(6, 14)]
                txt = " ".join(seg).strip(",;:.!?\"'()[]-")
                if txt and all(ch.isprintable() for ch in txt):
                    return "to " + txt[0].lower() + txt[1:] if r.random() < 0.3 else txt[0].lower() + txt[1:]
        ws = self.short_words
        forms = ["to {w} a {w} and {w} near the {w} on a {w} {w}", "to {w} with the {w} before the {w} {w}",
                 "a {w} of {w} {w} shared with a {w}", "walking along the {w} while the {w} {w} plays",
                 "the {w} {w} that opens every {w} at dawn", "to bring a {w} {w} and a small {w}"]
        f = r.choice(forms)
        while "{w}" in f:
            f = f.replace("{w}", r.choice(ws), 1)
        return f

    def family_fact(self, r, L, dense):
        tok = self.tok
        for attempt in range(6):
            n_f = r.choice([1, 1, 2, 3, 4])
            subs = r.sample(FACT_SUBJECTS, n_f)
            places = r.sample(PLACES, n_f) if r.random() < 0.5 else [r.choice(PLACES)] * n_f
            facts = []
            for s, P in zip(subs, places):
                S = s.replace("{P}", P)
                pred = self.predicate(r)
                sent = S[0].upper() + S[1:] + " is " + pred + "."
                facts.append((S, sent, pred))
            qi = r.randrange(n_f)
            S, sent, pred = facts[qi]
            q = self.fill(r.choice(FACT_QUESTIONS), S=S)
            ql = q[0].lower() + q[1:]
            qb = r.choice(FACT_QBLOCK).replace("{q}", q).replace("{ql}", ql)
            ans = sent if r.random() < 0.85 else pred[0].upper() + pred[1:] + "."
            intro = r.choice(FACT_INTROS) if r.random() < 0.8 else ""
            outro = r.choice(FACT_OUTROS)
            pre = [(tok.unit(intro), KIND_CTX)] if intro else []
            post = ([(tok.unit(outro if r.random() < 0.5 else "\n" + outro), KIND_CTX)] if outro else [])
            post += [(tok.unit(qb), KIND_CTX), (tok.unit(ans), KIND_FACT), ([tok.eos], KIND_FACT)]
            hay = "essay" if (not dense or r.random() < 0.5) else "noise"
            out = self.assemble(L, pre, hay, [f[1] for f in facts], post, r, newline_needles=r.random() < 0.6)
            if out is not None:
                return out
        return None

    # ------------------------------------------------------------------ family D: plain text
    def family_lm(self, r, L):
        ids = [self.tok.bos]
        ch = self.haystack_essay(r, L, 0, r.random() < 0.5)
        for x in ch:
            ids += x
        assert len(ids) == L + 1
        return ids, [KIND_CTX] * (L + 1)

    def sample(self, r, L, fam, dense):
        if fam == "kv":
            out = self.family_kv(r, L, dense)
        elif fam == "vt":
            out = self.family_vt(r, L, dense)
        elif fam == "fact":
            out = self.family_fact(r, L, dense)
        else:
            out = None
        if out is None:
            out = self.family_lm(r, L)
        return out


# ------------------------------------------------------------------------------------------------------
# curriculum: phases (by fraction of the training time)
PHASES = [
    # (name, {L: weight}, tokens per batch, {family: weight}, dense-probability)
    ("short", {128: 0.25, 256: 0.35, 512: 0.40}, 65536, {"kv": 0.55, "vt": 0.22, "fact": 0.15, "lm": 0.08}, 0.7),
    ("mid", {512: 0.2, 1024: 0.4, 2048: 0.4}, 65536, {"kv": 0.5, "vt": 0.2, "fact": 0.2, "lm": 0.1}, 0.15),
    ("long", {1024: 0.15, 2048: 0.25, 3072: 0.2, 4096: 0.4}, 65536, {"kv": 0.5, "vt": 0.2, "fact": 0.2, "lm": 0.1}, 0.05),
]
_PHASES_V2 = [(n, dict(l), t, dict(f), d) for n, l, t, f, d in PHASES]


# family A (key-value), sparse samples: how many keys, and the haystack kinds (essay, noise, kv, words).
# v4 (a continuation of v3) gives more weight to one or two keys in long prose haystacks, the case that
# v3 still got wrong 15% of the time (copying prose near the needle instead of the value).
KEY_COUNTS = [1, 1, 2, 2, 3, 4, 4, 5, 6, 8, 10, 12, 16]
KEY_COUNTS_V4 = [1, 1, 1, 1, 2, 2, 3, 4, 4, 5, 6, 8, 10, 12, 16]
HAY_KV = [0.65, 0.2, 0.08, 0.07]
HAY_KV_V4 = [0.8, 0.1, 0.05, 0.05]


def set_recipe(name):
    """Select the data recipe (call before the data workers are forked)."""
    global RECIPE
    RECIPE = name
    PHASES[:] = [(n, dict(l), t, dict(f), d) for n, l, t, f, d in _PHASES_V2]
    if name in ("v3", "v4"):  # more variable chains after the short phase (VT was the task left unlearnt by v1/v2)
        for ph in (1, 2):
            PHASES[ph][3].update({"kv": 0.45, "vt": 0.27, "fact": 0.18, "lm": 0.1})
    if name == "v4":
        PHASES[2][3].update({"kv": 0.52, "vt": 0.25, "fact": 0.13, "lm": 0.1})


set_recipe(RECIPE)


def make_batch(gen, r, phase, tpb_override=None):
    name, lens, tpb, fams, dense_p = PHASES[phase]
    tpb = tpb_override or tpb
    L = r.choices(list(lens), list(lens.values()))[0]
    B = max(1, tpb // L)
    X = np.empty((B, L + 1), dtype=np.int16)
    K = np.empty((B, L + 1), dtype=np.uint8)
    fl = list(fams)
    fw = list(fams.values())
    for b in range(B):
        fam = r.choices(fl, fw)[0]
        ids, kinds = gen.sample(r, L, fam, r.random() < dense_p)
        X[b] = ids
        K[b] = kinds
    return X, K


def load_gen(carry, tok_model):
    tok = Tok(tok_model)
    corpus = Corpus(os.path.join(carry, "filler_tok.npz"))
    words = json.load(open(os.path.join(carry, "words.json")))
    return Gen(tok, corpus, words)


if __name__ == "__main__":
    import argparse, time
    ap = argparse.ArgumentParser()
    ap.add_argument("--carry", default=".testbed_carry")
    ap.add_argument("--tok", default="models/testbed/tokenizer.model")
    ap.add_argument("--show", type=int, default=0)
    ap.add_argument("--L", type=int, default=512)
    ap.add_argument("--fam", default="kv")
    ap.add_argument("--dense", type=int, default=0)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    g = load_gen(a.carry, a.tok)
    r = random.Random(a.seed)
    for i in range(a.show):
        ids, kinds = g.sample(r, a.L, a.fam, bool(a.dense))
        # print with answers marked
        out, cur, ck = [], [], None
        for t, k in zip(ids[1:], kinds[1:]):
            if k != ck and cur:
                txt = g.tok.decode(cur)
                out.append(txt if ck == 0 else "[[" + txt + "]]" if True else txt)
                cur = []
            ck = k
            cur.append(t)
        if cur:
            out.append(g.tok.decode(cur) if ck == 0 else "[[" + g.tok.decode(cur) + "]]")
        print("=" * 30, a.fam, a.L, "dense" if a.dense else "")
        print("".join(x if not x.startswith("[[") else " " + x for x in out).replace("\u2581", " "))
        assert len(ids) == a.L + 1
    if a.bench:
        for ph in range(len(PHASES)):
            t0 = time.time()
            n = 0
            while time.time() - t0 < 8:
                X, K = make_batch(g, r, ph)
                n += X.size
                assert X.min() >= 0 and X.max() < g.tok.vocab
            dt = time.time() - t0
            print(f"phase {PHASES[ph][0]}: {n / dt:,.0f} tokens/s on one core")
