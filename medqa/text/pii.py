"""Scrub personal identifiers from patient text before it is stored for training or leaves the machine.

Matching runs on a normalised view of the text — NFKC (full-width digits, letters and punctuation become ASCII)
and Chinese-numeral digits read as digits — but replacements are made in the original text, so everything that
is not an identifier stays exactly as written. Each identifier becomes a typed placeholder such as `[PHONE]`.

Detectors (the `DETECTORS` table names the HIPAA Safe Harbor identifier and the PIPL / GB/T 35273 kind each one
covers): maintained validators where one exists — `phonenumbers` (libphonenumber) for phone numbers in any format,
`python-stdnum` for the PRC resident-ID check digit, Luhn (bank cards), IBAN, US SSN and NHS numbers, `ipaddress`
for IP addresses, the US Census name lists of the `names` package as an English given-name/surname gazetteer —
and patterns for the rest: e-mail, URLs, labelled passport/licence/record/insurance/account numbers, messenger
handles and user names, dates of birth, whole addresses in both languages and postcodes, licence plates, employer
and job title; names after cue words in both languages (患者/我叫/他叫/姓名/kinship words such as 我婆婆/我妈/小姨夫…,
family name + title such as 李总/张老师, patient/my name is/account holder/Mr./my daughter…, greetings in answers:
"张伟您好", "Dear …"), English full names with particles, apostrophes and hyphens (Pieter van der Berg,
O'Sullivan-Reid), and Chinese person names without a cue from `jieba`'s part-of-speech tags (`nr`) when they start
with a family name (single or compound, 钟离/慕容…).

A number with a check digit counts on its own only when the check passes: a resident ID that fails it is scrubbed
only after an ID label (身份证, ID …), a card number that fails Luhn only after an account/card label.

Cost: jieba's tagger is the expensive part, so it runs only on the blocks of Chinese text (jieba cuts each run of
Han/alphanumeric characters on its own) that hold a possible name: a family name in a position where a name could
be reported, or a cue word. Text without one is never segmented; the result is the same as tagging everything.
`scrub` returns the new text; `scrub_with_counts` also says what was removed (for data cards and tests).
Recall and the false-scrub rate on a labelled set are measured by tests/prepare/test_pii.py (numbers in docs/data.md).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter

# What each detector covers: (placeholder kind, detector, HIPAA Safe Harbor identifier (45 CFR 164.514(b)(2)(i),
# letters A–R), PIPL / GB/T 35273-2020 Appendix A personal-information kind). docs/data.md lists it.
DETECTORS: tuple[tuple[str, str, str, str], ...] = (
    ("NAME", "zh: jieba `nr` tags + naming/kinship/friend/title cues + compound surnames, a name before a clinician's "
             "title (周文斌医生) where jieba tags it; Chinese materia medica (刘寄奴, 马钱子) and a word before a dose are not "
             "names; en: cue words, US Census gazetteer (`names`) given name + surname, particles (van der, de la, ap, Ó), "
             "O'/D'/Mc/Mac, Al-/El-/Abu-, hyphens",
     "A names", "个人基本资料: 姓名"),
    ("ADDRESS", "zh: divisions (省/市/区/县) + road + number + building/unit/room, 小区/大厦; en: number + street + "
                "towns + US state, street-first names (Heol, Ffordd, Rue, Calle, Via) + town; UK postcodes, US ZIP after "
                "a state, 邮编 + 6 digits",
     "B geographic subdivisions smaller than a state (street, city, ZIP)", "个人基本资料: 住址; 个人位置信息"),
    ("DOB", "labelled dates (出生日期, DOB, born …) in numeric, Chinese and English-month forms; a date + 出生",
     "C dates related to the individual (birth date)", "个人基本资料: 生日"),
    ("PHONE", "`phonenumbers` (libphonenumber): valid CN/US/GB numbers in any format, any +CC number; possible "
              "numbers after a phone/fax word; public hotlines kept",
     "D telephone numbers; E fax numbers", "个人基本资料: 个人电话号码; 个人通信信息"),
    ("EMAIL", "address pattern", "F e-mail addresses", "个人基本资料: 电子邮件地址"),
    ("ID", "PRC resident ID with GB 11643 check digit (`stdnum.cn.ric`); US SSN (`stdnum.us.ssn`); NHS number "
           "(`stdnum.gb.nhs`); UK NI number and driving-licence shapes; UUID and MAC device identifiers; "
           "passport/通行证/身份证/driving-licence/IMEI/serial (S/N)/licence/工号/学号/employee/student numbers after "
           "their label",
     "G social security numbers; K certificate/license numbers; M device identifiers and serial numbers; "
     "R other unique identifying numbers",
     "个人身份信息: 身份证、护照、驾驶证、社保卡; 个人常用设备信息"),
    ("MRN", "record/admission/outpatient/建档/医保/保单/Medicare/insurance numbers after their label; US Medicare "
            "beneficiary identifier shape",
     "H medical record numbers; I health plan beneficiary numbers", "个人健康生理信息: 病历、医保; 个人身份信息: 社保卡"),
    ("ACCOUNT", "bank cards passing Luhn (`stdnum.luhn`); IBAN with ISO 7064 check (`stdnum.iban`); account/card "
                "numbers after their label (工行卡, 卡号, account number …)",
     "J account numbers", "个人财产信息: 银行账户"),
    ("HANDLE", "messenger handles and user names after the app's name or 用户名/账户名/username; @handles, also "
               "Chinese ones (@草莓味的…)",
     "R other unique identifying codes", "网络身份标识信息: 个人信息主体账号; 联系人信息"),
    ("URL", "http(s):// and www. addresses", "N web URLs", "个人上网记录; 网络身份标识信息"),
    ("IP", "IPv4/IPv6 validated by `ipaddress`", "O IP addresses", "网络身份标识信息: IP 地址"),
    ("PLATE", "Chinese plates (粤B·D36912), current UK registrations, any plate after a plate/reg label; VINs with "
              "their ISO 3779 check digit or after a VIN/车架号 label",
     "L vehicle identifiers and serial numbers, including license plates", "个人位置信息: 行踪 (the owner's vehicle)"),
    ("JOB", "employer + job title after 我是/我在/退休前是 … (…员, …师 titles; a clinician at a named 医院/诊所/药店), "
            "\"I'm a <job> at/for/with <Organisation> (in <Town>) (on the <X> job)\"",
     "— (not a Safe Harbor identifier; quasi-identifier)", "个人教育工作信息: 职业、职位、工作单位"),
)

# Chinese family names (the common single-character surnames + the frequent compound ones).
# Compound surnames of the Hundred Family Surnames (百家姓) still in use.
_COMPOUND = ("欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|长孙|司徒|夏侯|令狐|宇文|独孤|南宫|西门|端木|轩辕|钟离|宗政|濮阳|"
             "淳于|单于|太叔|申屠|公冶|澹台|公羊|赫连|呼延|万俟|闻人|百里|东郭|南门|羊舌|微生|梁丘|左丘|颛孙|拓跋|乐正|司空|"
             "司寇|仲孙|巫马|公良|段干|谷梁|漆雕|公西|第五|东门|西门|慕容|完颜|纳兰|爱新觉罗")
_SINGLE = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭"
    "陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤向常温康施文牛樊葛邢安"
    "齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路"
    "游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全"
    "佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚"
    "鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁"
    "芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯"
    "元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
_SURNAME = rf"(?:{_COMPOUND}|[{_SINGLE}])"
_ZH_NAME_SHAPE = re.compile(rf"{_SURNAME}[\u4e00-\u9fff]{{1,3}}")
_COMPOUND_RX = re.compile(_COMPOUND)
_HAN = re.compile(r"[\u4e00-\u9fff]")
_SURNAME_CHARS = frozenset(_SINGLE + _COMPOUND.replace("|", ""))

# Words that start with a family-name character but are clinical (never a name), checked on candidate names.
_NOT_NAMES = re.compile(
    r"^(?:高热|高烧|高血|高龄|高危|高压|黄疸|黄芪|黄体|白细|白带|白术|白内|严重|程度|方面|石膏|金黄|金银|龙胆|江湖|史上|万一|任何|钟点|"
    r"雷同|于昨|于今|于明|于\d|周围|周岁|周期|夏天|冯氏|曾经|胡椒|陈皮|何首|杜仲|王不|常规|常见|全身|全血|安全|安静|明显|明天|"
    r"平时|平均|平卧|平躺|平稳|平静|平常|时间|时候|乐观|和缓|和|应该|应当|应用|原因|原发|单纯|单侧|强烈|强直|于|管理|管状|华法|柏油|信号|边缘|边界|"
    r"连续|包括|包块|经常|经期|解热|解痉|容易|通过|初期|初次|宫颈|宫缩|房颤|房间|费用|卫生|花粉|梅毒|蒙脱|毛囊|毛发|甘油|甘草|"
    r"沙丁|沙眼|景天|来源|来自|苗条|谷丙|谷草|桂枝|党参|丁香|柴胡|葛根|施行|牛黄|牛奶|钱币|钙|文献|鲁米|杨梅|乔木|伍用|"
    r"贾第|詹姆|戴口|童年|成人|成年|成分|成为|方法|方式|方案|向心|向上|向下|孔径|孔隙|麻醉|麻疹|麻木|查体|查看|利尿|利多|"
    r"国内|国外|国际|元素|由于|衣原|展开|信息|那么|那些|都是|都有|都可|谢谢|安抚|宿舍|屈光|戴帽|戴口|水|可)")

# Chinese numerals read as digits (one character each, so positions do not move).
_ZH_DIGIT_CHARS = "零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖"
_ZH_DIGIT_VALUES = "001234567891123456789"


def _digit_view(text: str) -> str:
    """`text` with runs of 7+ Chinese-numeral digits written as ASCII digits (same length)."""
    def conv(m: re.Match[str]) -> str:
        return m.group(0).translate(str.maketrans(_ZH_DIGIT_CHARS, _ZH_DIGIT_VALUES))

    return re.sub(rf"[{_ZH_DIGIT_CHARS}]{{7,}}", conv, text)


@functools.lru_cache(maxsize=8192)
def _nfkc(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


def _normalise(text: str) -> tuple[str, list[int]]:
    """(NFKC of each character, map from each normalised position to its original position)."""
    table = {ord(ch): n for ch in set(text) if ord(ch) > 127 and (n := _nfkc(ch)) != ch}
    if all(len(n) == 1 for n in table.values()):  # the usual case: positions do not move
        return text.translate(table), list(range(len(text) + 1))
    out, where = [], []
    for i, ch in enumerate(text):
        n = _nfkc(ch) if ord(ch) > 127 else ch
        out.append(n)
        where.extend([i] * len(n))
    where.append(len(text))
    return "".join(out), where


_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE = (r"(?:\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}|"
         rf"\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH},? \d{{4}}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})")
_CN_PLACE = r"[\u4e00-\u9fff]{1,8}?(?:路|街|大道|大街|巷|弄|胡同|道)"
_CN_NUM = r"(?:\d+|[一二三四五六七八九十]+)"
# Administrative divisions before a street (浙江省杭州市拱墅区…): Han characters that are not verbs, pronouns or
# kinship words of the sentence around the address (住在, 寄到, 我妈), ending in a division's suffix.
_CN_ADMIN_CHAR = r"(?:(?![在住到寄往是于的我你他她们家妈爸给把从和跟去来送搬回请])[\u4e00-\u9fff])"
_CN_ADMIN = rf"(?:{_CN_ADMIN_CHAR}{{2,7}}?(?:特别行政区|自治区|自治州|自治县|省|市|区|县|旗|盟|镇|乡|街道))"
_LABEL_JOIN = r"\s*(?:是|为|is|[:#])?\s*"
# US state codes (a ZIP code follows one).
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|"
              "ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR")
_EN_STREET = (r"(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Boulevard|Blvd\.?|Drive|Dr\.?|Court|Ct\.?|Way|"
              r"Place|Pl\.?|Close|Crescent|Terrace|Grove|Gardens|Square|Row|Mews|Walk|Parade|Hill|Rise|Circle|Parkway|"
              r"Highway|Hwy|Trail|Green)")
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼港澳台"

# (kind, pattern, group): the span of `group` is replaced. Run on the normalised text. Numbers with a check digit
# or a fixed structure (resident ID, bank card, IBAN, SSN, NHS, IP) are found by `_validated_spans` instead.
_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    ("URL", re.compile(r"(?<![A-Za-z0-9_@])((?:https?://|www\.)[^\s<>\"'，。、；！？（）【】\u3000-\u9fff\uff00-\uffef]+"
                       r"[^\s<>\"'，。、；！？（）【】\u3000-\u9fff\uff00-\uffef.,;:!?)\]])",
                       re.I), 1),
    ("EMAIL", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), 0),
    # Passport, social-security, NHS, Medicare, driving-licence and other ID numbers introduced by a label.
    ("ID", re.compile(r"(?:护照(?:号码|号)?|(?:港澳)?通行证(?:号码|号)?|身份证(?:号码|号)?|证件号(?:码)?|社保(?:卡)?号|驾驶证号|"
                      r"passport(?: no\.?| number| #)?|\bID (?:card )?(?:no\.?|number|#)|identity card (?:no\.?|number)|"
                      r"national insurance (?:no\.?|number)|\bNI number|social security (?:no\.?|number)|\bSSN|"
                      r"\bNHS (?:no\.?|number)|driv(?:er'?s|ing) licen[cs]e(?: no\.?| number)?|\bIMEI|serial(?: no\.?| number| #)?|"
                      r"\bS/?N\b|序列号|设备号|工号|员工号|学号|学籍号|(?:employee|staff|student|payroll) (?:no\.?|number|ID|#)|"
                      r"licen[cs]e (?:no\.?|number)|certificate (?:no\.?|number)|执业证号|资格证号)\s*(?:是|为|is|[:#])?\s*"
                      r"([A-Za-z]{0,5}\d[\dA-Za-z]{3,}(?:\([\dA-Za-z]\))?|\d{3}[ -]?\d{2,3}[ -]?\d{3,4})(?![\dA-Za-z])", re.I), 1),
    # UK driving licence numbers in their own shape (surname letters, birth-date digits, initials, check characters).
    ("ID", re.compile(r"(?<![A-Za-z0-9])([A-Z9]{5}\d{6}[A-Z9]{2}\d[A-Z]{2})(?![A-Za-z0-9])"), 1),
    # Device identifiers: UUIDs (app and device IDs) and MAC addresses.
    ("ID", re.compile(r"(?<![0-9A-Fa-f-])([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})(?![0-9A-Fa-f-])"), 1),
    ("ID", re.compile(r"(?<![0-9A-Fa-f:-])((?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2})(?![0-9A-Fa-f:-])"), 1),
    # UK National Insurance numbers in their own shape (two prefix letters, six digits, suffix A–D).
    ("ID", re.compile(r"(?<![A-Za-z0-9])((?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?"
                      r"[A-D])(?![A-Za-z0-9])"), 1),
    # US Medicare beneficiary identifiers (11 characters in a fixed letter/digit pattern, dashes optional).
    ("MRN", re.compile(r"(?<![A-Za-z0-9])([1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?"
                       r"[AC-HJKMNP-RT-Y]{2}\d\d)(?![A-Za-z0-9])"), 1),
    # Medical record / admission / outpatient / maternity / insurance numbers introduced by a label.
    ("MRN", re.compile(r"(?:病历号|病案号|住院号|门诊号|就诊号|就诊卡号|档案号|建档号|医保卡号|医保号|医保(?:个人)?编号|个人编号|社保编号|"
                       r"保单号(?:码)?|保险单号|理赔号|"
                       r"参保号|\bMRN|hospital (?:no\.?|number)|(?:medical |hospital |patient )?record (?:no\.?|number|#)|"
                       r"case (?:no\.?|number)|(?:medicare|medicaid|insurance|policy|member|health plan|patient|client|clinic) (?:id|no\.?|number|#)|"
                       r"患者(?:编号|号)|病人(?:编号|号)"
                       rf"(?: is)?){_LABEL_JOIN}"
                       r"([A-Za-z]{0,4}\d[A-Za-z0-9]{0,3}(?: \d{3,4}){1,3}(?![\dA-Za-z])|[A-Za-z]{0,4}-?\d[A-Za-z0-9-]{3,})",
                       re.I), 1),
    # Bank card and account numbers introduced by a label (a card of a named bank: 工行卡, 建行卡 …).
    ("ACCOUNT", re.compile(r"(?:银行卡号?|[工建农中招交]行卡|信用卡号?|借记卡号?|储蓄卡号?|卡号|账号|帐号|账户|帐户|"
                           r"\baccount(?: no\.?| number| #)?|\bacct\.?(?: no\.?| number)?|\bIBAN|sort code|card (?:no\.?|number))"
                           r"\s*(?:是|为|is|[:#])?\s*(\d[\d -]{4,}\d|[A-Z]{2}\d{2}[A-Z0-9 ]{10,30}[A-Z0-9])", re.I), 1),
    # Messaging handles and user names: after the app's name and a connector, or written as @handle; without a
    # connector only a value that looks like a handle (a digit, underscore or inner dot).
    ("HANDLE", re.compile(r"(?<![A-Za-z])(?:微信(?:号|ID)?|QQ(?:号)?|抖音号?|小红书号?|微博|WeChat(?: ID)?|Weixin|Instagram|Insta|IG|"
                          r"Twitter|TikTok|Telegram|Snapchat|WhatsApp|Skype|Facebook|user ?name|handle|用户名|账户名|帐户名|"
                          r"账号名|登录名|昵称|login(?: name)?|screen ?name)"
                          r"\s*(?:号码|号|ID)?(?:\s*(?:是|为|is|[:])\s*|\s+(?=[A-Za-z0-9_.-]*[_.\d]))"
                          r"(@?(?=[A-Za-z0-9_.-]{4,})[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)", re.I), 1),
    ("HANDLE", re.compile(r"(?<![\w.@])(@(?!\d{1,2}(?:am|pm|:\d\d)\b)[A-Za-z0-9_](?:[A-Za-z0-9_.]{1,28}[A-Za-z0-9_]))(?![\w@])"), 1),
    # @handles in Chinese (微博 and 小红书 names are often Chinese words): up to the next punctuation or space.
    ("HANDLE", re.compile(r"(?<![A-Za-z0-9_.@])(@(?=\w{0,19}[\u4e00-\u9fff])\w{2,20})"), 1),
    # Dates of birth: after a label, or a date followed by 出生.
    ("DOB", re.compile(rf"(?:出生日期|出生年月日|出生年月|出生于|出生在|生日|DOB|D\.O\.B\.?|date of birth|birth ?date|born on|born)"
                       rf"\s*(?:是|为|[:,])?\s*(?:is\s+)?({_DATE})", re.I), 1),
    ("DOB", re.compile(rf"({_DATE})\s*出生"), 1),
    # Street addresses: administrative divisions, a road with a house number (+ building, unit, room).
    ("ADDRESS", re.compile(rf"((?:{_CN_ADMIN})*{_CN_PLACE}(?:[一二三四五六七八九十]+段)?{_CN_NUM}(?:号|弄)(?:院)?"
                           rf"(?:{_CN_NUM}(?:号楼|栋|幢|号))?(?:{_CN_NUM}单元)?(?:{_CN_NUM}(?:室|号))?)"), 1),
    ("ADDRESS", re.compile(rf"((?:{_CN_ADMIN})*[\u4e00-\u9fff]{{2,8}}(?:园|园区|小区|大厦|花园|新村)(?:[\u4e00-\u9fff]{{1,3}}区)?"
                           r"[A-Za-z0-9-]*\d[A-Za-z0-9-]*(?:栋|幢|号楼|单元|室))"), 1),
    # A house number and street, then the town(s) and a US state after commas.
    ("ADDRESS", re.compile(rf"\b(\d{{1,5}}[A-Za-z]? (?:(?:[NSEW]|NE|NW|SE|SW)\.? )?(?:[A-Z][a-z]+ ){{1,3}}{_EN_STREET}"
                           r"(?:,? (?:Apt|Apartment|Unit|Suite|Ste|Flat|Fl|Floor|Rm|Room|#)\.? ?#?[A-Za-z0-9-]{1,5})?"
                           rf"(?:,? (?:[A-Z][a-z]+)(?: [A-Z][a-z]+)?){{0,3}}"
                           rf"(?:,? (?:{_US_STATES})(?= \d{{5}}))?)(?=\W|$)"), 1),
    # Street names that start with their street word (Welsh Heol/Ffordd/Stryd, Rue, Calle, Via …), then the town.
    ("ADDRESS", re.compile(r"\b(\d{1,5}[A-Za-z]?,? (?:Heol|Ffordd|Stryd|Lôn|Lon|Rhodfa|Maes|Rue|Calle|Avenida|Rua|Via|Viale|Strada|"
                           r"Plaza|Carrer|Avinguda)(?: (?:[a-zà-ÿ']{1,3}|[A-ZÀ-Þ][a-zà-ÿŵŷ']+)){1,4}"
                           r"(?:,? [A-Z][a-zà-ÿ]+(?: [A-Z][a-zà-ÿ]+)?)?)(?=\W|$)"), 1),
    # Postcodes: UK (CB1 2AD, SW1A 1AA), US ZIP after a state, Chinese 邮编 + six digits.
    ("ADDRESS", re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})(?![A-Za-z0-9])"), 1),
    ("ADDRESS", re.compile(rf"\b(?:{_US_STATES}) (\d{{5}}(?:-\d{{4}})?)(?!\d)"), 1),
    ("ADDRESS", re.compile(r"(?:邮编|邮政编码|postcode|post code|zip(?: code)?)\s*(?:是|为|is|[:])?\s*(\d{5,6}(?:-\d{4})?)(?!\d)", re.I), 1),
    # Vehicle registrations: Chinese (粤B·D36912), current UK (LK19 XWP), any other after a plate/reg label.
    ("PLATE", re.compile(rf"([{_PROVINCES}][A-Z][·•・.\s-]?(?=[A-Z0-9]{{0,5}}\d)[A-Z0-9]{{5,6}})(?![A-Za-z0-9])"), 1),
    ("PLATE", re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2} ?[A-Z]{3})(?![A-Za-z0-9])"), 1),
    ("PLATE", re.compile(r"(?:车牌(?:号码|号)?|\b(?:number plate|licen[cs]e plate|plate|car reg(?:istration)?|reg(?:istration)? (?:no\.?|number))\b)"
                         r"(?: (?:no\.?|number))?\s*(?:是|为|is|[:,])?\s*"
                         r"(?-i:((?=[A-Z0-9 -]*\d)(?=[A-Z0-9 -]*[A-Z])[A-Z0-9]{2,4}[ -]?[A-Z0-9]{2,5}))"
                         r"(?![A-Za-z0-9])", re.I), 1),
    # Employer and job (PIPL: 工作单位/职业): 我是/退休前是 + organisation + 的 + title; 在 + organisation + 当/做 + title;
    # "I'm a/the <job> at <Organisation> (in <Town>)".
    ("JOB", re.compile(r"(?:我是|我在|他是|她是|他在|她在|退休前是|退休前在|以前是|以前在|之前是|之前在)((?:[\u4e00-\u9fff]{2,14}?)"
                       r"(?:(?<=[是])的|(?<![是])(?:的|当|做|任|担任))?(?:副|首席|常务|执行)?"
                       r"(?:[\u4e00-\u9fff]{1,3}官|护士长|主任|院长|科长|处长|局长|所长|校长|厂长|经理|总监|董事长|总经理|主管|会计|"
                       r"教授|工程师|律师|老师|教师|司机|店长|站长|书记|秘书|组长|队长|班长|主席|"
                       r"[\u4e00-\u9fff]{1,3}(?<!人)(?<!成)(?<!会)(?<!党)(?<!学)员|[\u4e00-\u9fff]{1,2}(?:技师|厨师|设计师|会计师|药剂师|营养师)))(?=[\u4e00-\u9fff]{2,4}[，,。\s]|[，,。；;\s]|叫|$)"), 1),
    # A clinician's post at a named place (我是协和医院的护士): the place must be one (医院, 诊所, 药店 …), so "他是我的主治医生"
    # stays.
    ("JOB", re.compile(r"(?:我是|我在|他是|她是|他在|她在|退休前是|退休前在|以前是|以前在|之前是|之前在)"
                       r"([\u4e00-\u9fff]{2,12}(?:医院|诊所|卫生院|卫生所|卫生服务中心|医务室|药店|药房|医科大学|疗养院|养老院)"
                       r"(?:[\u4e00-\u9fff]{1,6}科)?(?:的|当|做)?(?:护士长|护士|医生|医师|药师|大夫|护工|护理员))"), 1),
    ("JOB", re.compile(r"\b(?:I'm|I am|I work as|I worked as|he's|she's|he is|she is|[Hh]e works as|[Ss]he works as)"
                       r" (?:a |an |the )((?!patient|inpatient|outpatient|regular|member|carer|mum|dad|mother|father)"
                       r"[a-z][a-z-]*(?: (?:of )?[a-z][a-z-]*){0,3} (?:at|for|with) (?:the )?[A-Z][\w&'-]*(?: (?:[A-Z][\w&'-]*|of|for|"
                       r"distribution|centre|center|warehouse|factory|office|branch|store|plant|depot|hospital|school|"
                       r"college|university|clinic|bank|council|station|academy)){0,5}(?: in [A-Z][a-z]+(?: [A-Z][a-z]+)?)?"
                       r"(?: on the [\w-]+(?: [\w-]+)? (?:job|project|contract|site|line|route))?)"), 1),
]

# English names. Letters include the Latin-1 accented ones (María, Tomás, Müller); a surname may carry O'/D'/Mc/Mac,
# a hyphen, or a particle before it (van der Berg, de la Cruz, de Souza).
_UP, _LO = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_EN_WORD = rf"(?:[{_UP}]'[{_UP}][{_LO}]+|[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?)"  # Liam, O'Brien, D'Souza, MacDonald
_PARTICLE = r"(?:van der|van den|van de|von der|de la|de los|de las|del|de|van|von|da|das|dos|di|du|le|la|ter|ten|bin|ibn|al|ap|ab|Ó|Ní|Nic|Uí|Ua)"
_EN_NAME = rf"({_EN_WORD}(?:(?:[ -]| {_PARTICLE} ){_EN_WORD}){{0,3}})"
_EN_KIN = (r"son|daughter|wife|husband|partner|mum|mom|mother|dad|father|brother|sister|grandson|granddaughter|gran|"
           r"granny|grandma|grandmother|grandad|granddad|grandpa|grandfather|aunt|uncle|nephew|niece|cousin|friend|"
           r"flatmate|roommate|boyfriend|girlfriend|fianc[eé]e?|baby|child|toddler|stepson|stepdaughter")
_EN_CUES = re.compile(
    rf"(?:\b(?:[Pp]atient|[Pp]t\.?|[Nn]ame(?: is|'s)?|[Nn]amed|[Cc]alled|[Cc]all me|[Tt]his is|I am|I'm|[Dd]ear|[Hh]i|"
    rf"[Hh]ello|[Aa]ccount holder|[Cc]ard ?holder|[Nn]ame on (?:the )?card|[Aa]ddressed to|[Ss]igned)"
    rf"\s*[:,]?\s+|\b(?:[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir) (?:{_EN_KIN}),?\s+|\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+|"
    rf"\b(?:[Aa]unt(?:ie)?|[Uu]ncle|[Gg]randma|[Gg]randpa|[Gg]ranny|[Nn]ana|[Cc]ousin)\s+)"
    rf"(?!(?:Mr|Mrs|Ms|Miss|Dr)\b){_EN_NAME}")
# Capitalised words that follow those cues but are not names.
_EN_NOT_NAMES = frozenset(
    "I A An The This That My Your His Her Our Their Is Was Has Had Have With Who And Or But Not So Very Also Just "
    "Presents Reports Complains Denies Pregnant Worried Sorry Fine Okay Ok Here There Thank Thanks Doctor Nurse "
    "Patient Patients Mr Mrs Ms Dr Visits Sir Madam All Everyone Team Please Yes No American Chinese British English "
    "Male Female Man Woman Allergic Diabetic Asthmatic Tired Sick Feeling Taking On In At Of For To From By If When "
    "Today Yesterday Tomorrow Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())
_PARTICLE_RX = re.compile(rf"{_PARTICLE}$")
# A capitalised word and a surname after it (two to four words): checked against the census gazetteer below.
_EN_PAIR = re.compile(rf"(?<![\w'-])([{_UP}][{_LO}]+)(?:-[{_UP}][{_LO}]+)?((?: {_PARTICLE})? {_EN_WORD}(?:-{_EN_WORD})?)"
                      rf"(?!['’]s (?:disease|syndrome|sign|test|palsy|law|phenomenon|triad|ulcer|lymphoma|encephalopathy)|[\w-])")
# What follows an eponym, never a person: "Stevens-Johnson syndrome", "Graves disease".
_EPONYM_NEXT = re.compile(r"\s*(?:['’]s\s+)?(?:disease|syndrome|sign|test|palsy|reflex|score|scale|criteria|law|"
                          r"procedure|operation|manoeuvre|maneuver|classification|fracture|phenomenon|triad|ulcer|"
                          r"lymphoma|encephalopathy|tumou?r|type|point|node|cyst|block)\b", re.I)
# What follows the name of a place or institution (Royal Marsden Hospital, Mill Road).
_INSTITUTION_NEXT = re.compile(rf" (?:Hospital|Clinic|Infirmary|Centre|Center|Institute|University|College|School|Trust|"
                               rf"Foundation|Academy|Surgery|Practice|Health|Medical|House|Hall|{_EN_STREET})\b")
# First names that are also ordinary words or months (and so start sentences): never a name on the gazetteer alone.
_EN_FIRST_STOP = frozenset(
    "WILL MAY JUNE AUGUST APRIL MARCH LONG HOPE JOY MARK GRANT BELL DAWN VON SUMMER AUTUMN WINTER SPRING FAITH "
    "GRACE CHANCE CHARITY HONEY SUNNY RUSTY BILL PAGE ROSE IVY HOLLY GOLDIE CANDY MISTY STORMY SKY ROCK GUY SAGE "
    "CHRISTIAN CHRISTMAS EASTER DOLLY PENNY SANDY BUNNY BABY BOY KING EARL DEAN MAJOR MILES STAR STERLING WOOD".split())


def _fold(word: str) -> str:
    """Upper-case ASCII of a name for the gazetteer (Müller → MULLER, O'Brien → OBRIEN)."""
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().upper().replace("'", "")


@functools.lru_cache(maxsize=1)
def _gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames) of the US Census 1990 name lists shipped in the `names` package (MIT; 5,494 given
    names, 88,799 surnames), upper-case ASCII."""
    from importlib.resources import files

    def read(name: str) -> frozenset[str]:
        return frozenset(line.split(" ", 1)[0] for line in files("names").joinpath(name).read_text().splitlines() if line)

    return read("dist.male.first") | read("dist.female.first"), read("dist.all.last")


def _strong_surname(word: str, surnames: frozenset[str]) -> bool:
    """A surname by its form: O'/D' + name, Mc/Mac + capital, or a hyphenated pair of census surnames."""
    if re.fullmatch(rf"[OD]'[{_UP}][{_LO}]+|Ma?c[{_UP}][{_LO}]+|(?:Al|El|Abu|Abd|Abdel|Abdul|Bin|Ben|Ibn)-[{_UP}][{_LO}]+", word):
        return True
    parts = word.split("-")
    return len(parts) == 2 and all(_fold(p) in surnames for p in parts)


def _gazetteer_name_spans(text: str) -> list[tuple[int, int]]:
    """Full names without a cue word: a census given name + a census surname (Oliver Howell), a given name + a surname
    by its form (Margaret O'Sullivan-Reid), or a capitalised word + particle + surname (Roberto de Souza); a
    capitalised word not starting a sentence + a surname by its form (…claim: Klaus Müller-Schmidt)."""
    if not re.search(f"[{_UP}][{_LO}]+ ", text):
        return []
    given, surnames = _gazetteer()
    spans = []
    for m in _EN_PAIR.finditer(text):
        first, rest = m.group(1), m.group(2).strip()
        if _EPONYM_NEXT.match(text, m.end()) or _INSTITUTION_NEXT.match(text, m.end()) or first in _EN_NOT_NAMES:
            continue
        words = rest.split(" ")
        surname, particle = words[-1], len(words) > 1
        f = _fold(first)
        known_first = f in given and f not in _EN_FIRST_STOP
        sentence_start = re.search(r"(?:^|[.!?]\s+|\n)$", text[:m.start()]) is not None
        nobiliary = particle and (words[0] in ("von", "van", "ter", "ten") or words[:2] == ["de", "la"]) \
            and _fold(surname) in surnames
        if not (known_first or nobiliary or (not sentence_start and (particle or _strong_surname(surname, surnames)))):
            continue
        if known_first and not (particle or _strong_surname(surname, surnames)
                                or all(_fold(p) in surnames for p in surname.split("-"))):
            continue
        spans.append((m.start(), m.end()))
    return spans


# Chinese cues: a name follows (患者张伟, 我叫…, 姓名：…) or precedes (张伟您好, 李娜女士).
_ZH_CUE_BEFORE = re.compile(
    r"(?:患者姓名|病人姓名|姓名|名字(?:是|叫)?|名叫|叫做|我叫|我是|本人|患者|病人|病患|患儿|家属|联系人|"
    r"(?:我|他|她)的?(?:老公|老婆|丈夫|妻子|爱人|妈妈|母亲|爸爸|父亲|儿子|女儿|孩子|宝宝|奶奶|爷爷|外婆|外公)(?:叫|名叫|是)|"
    r"(?:孩子|宝宝|小孩|娃|闺女|他|她)(?:叫|名叫))\s*[:]?\s*")
# A kinship word right before a name (我婆婆王桂芬, 外婆刘芳芳, 小姨夫郑强): weaker than a naming cue, so what follows
# counts only when jieba tags it as a name or it is a three-character family + given name.
_ZH_KIN_CUE = re.compile(
    r"(?:老公|老婆|丈夫|妻子|爱人|媳妇|妈妈|母亲|爸爸|父亲|儿子|女儿|奶奶|爷爷|外婆|外公|姥姥|姥爷|婆婆|公公|岳父|岳母|"
    r"舅舅|舅妈|姑姑|姑父|姨妈|小姨夫|小姨|姨夫|伯伯|伯父|伯母|叔叔|婶婶|哥哥|姐姐|弟弟|妹妹|表哥|表姐|表弟|表妹|堂哥|堂姐|"
    r"堂弟|堂妹|孙子|孙女|外孙女|外孙|侄子|侄女|外甥女|外甥|女婿|儿媳|男朋友|女朋友|室友|同事|邻居|闺蜜|发小|好朋友|朋友|"
    r"老同学|同学|哥们|兄弟|(?:[我俺咱](?:妈|爸|哥|姐|弟|妹|叔|舅|姑|姨|婶|嫂)|(?:孩子)?[他她](?:爸|妈|爹|娘))"
    r"(?![妈爸哥姐弟妹叔舅姑姨婶嫂夫公婆爷奶子娘爹])|"
    r"首席[\u4e00-\u9fff]{1,3}官|总经理|董事长|护士长|经理|主任|院长|教授)(?:叫|名叫|是)?\s*[:]?\s*")
_ZH_CUE_AFTER = re.compile(r"(?:您好|你好|女士|先生|阿姨|叔叔|同学|老师|的家属|的妈妈|的爸爸|说)")
_ZH_TITLE_AFTER = re.compile(r"(?:医生|大夫|医师|护士长|护士|主任|教授|院长|药师)")
_ZH_NAME_END = re.compile(r"[^\u4e00-\u9fff]|$")
# Without a cue word, a name tagged by jieba counts only between such neighbours (a transliterated drug name such
# as 阿托品 or 莫特罗 is also tagged `nr`, but sits inside other characters).
_ZH_BEFORE_NAME = re.compile(r"(?:^|[^\u4e00-\u9fff]|和|跟|与|同|带|给|让|帮|找|替|陪|问|叫|是)$")
_ZH_AFTER_NAME = re.compile(r"(?:[^\u4e00-\u9fff]|$|的|说|昨|今|前|最近|一直|总是|经常|怀孕|在|去|来|都|也|和|跟|是|有|得|被|"
                            r"现在|这|突然|已经|刚|才|还|又|从|因为|每|今年|平时|住)")
# Chinese materia medica whose names start with a family-name character, which jieba tags as person names (`nr`):
# never a name (刘寄奴6克, 马钱子有大毒). Names from the index of the Chinese Pharmacopoeia (2020, vol. I).
_TCM_HERBS = frozenset(
    "刘寄奴 马钱子 马齿苋 马兜铃 马勃 马鞭草 徐长卿 王不留行 何首乌 杜仲 黄芪 黄芩 黄连 黄柏 黄精 黄药子 白芍 白术 白芷 白及 "
    "白果 白前 白薇 白头翁 白茅根 白鲜皮 白扁豆 白附子 牛膝 牛蒡子 牛黄 连翘 连钱草 柴胡 桑叶 桑枝 桑寄生 桑白皮 桑椹 桑螵蛸 "
    "桂枝 甘草 甘松 甘遂 党参 丁香 苏木 苏合香 沙参 沙苑子 沙棘 石斛 石膏 石菖蒲 石决明 石韦 石榴皮 龙骨 龙胆 龙眼肉 车前子 "
    "车前草 金银花 金钱草 金樱子 金荞麦 葛根 姜黄 蒲公英 蒲黄 夏枯草 夏天无 陈皮 胡黄连 胡椒 胡芦巴 罗汉果 罗布麻叶 艾叶 "
    "花椒 秦艽 秦皮 高良姜 吴茱萸 郁金 郁李仁 余甘子 常山 薄荷 麦冬 麦芽 阿胶 阿魏 柏子仁 鹿茸 鹿角 鹿角胶 熊胆 田七 "
    "关木通 乌梅 乌药 乌头 乌梢蛇 毕澄茄 荆芥 谷芽 谷精草 雷公藤 雷丸 伏龙肝 全蝎 钟乳石 檀香 安息香 朱砂 海藻 海马 "
    "海螵蛸 海金沙 海风藤 芦根 芦荟 路路通 山药 山楂 山茱萸 山慈菇 丹参 杜衡 焦山楂 焦神曲 佛手 红花 苍术 苍耳子 "
    "蔓荆子 戴星草 水蛭 水红花子 骆驼蓬 商陆 滑石 苦参 苦杏仁 蒺藜 虎杖 虎耳草 贯众 钩藤 升麻".split())
_TCM_PREFIXES = frozenset(h[:k] for h in _TCM_HERBS for k in range(2, len(h) + 1))
# A dose right after a word makes it an ingredient, not a person (刘寄奴6克, 某某 10g).
_DOSE_AFTER = re.compile(r"\s*(?:各)?\s*\d+(?:\.\d+)?\s*(?:克|g\b|mg|毫克|钱|两|片|粒|ml|毫升)", re.I)
# Public figures of medicine that texts name (not patients).
_PUBLIC_NAMES = frozenset("华佗 扁鹊 张仲景 孙思邈 李时珍 葛洪 皇甫谧 钱乙 叶天士 吴鞠通 钟南山 屠呦呦 林巧稚 张孝骞 "
                          "吴阶平 裘法祖 王清任 朱丹溪 刘完素 张景岳".split())


@functools.lru_cache(maxsize=1)
def _posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def _zh_tokens(text: str, near: list[int]) -> list[tuple[int, int, str, str]]:  # (start, end, word, flag)
    """(start, end, word, flag) for every jieba token of the blocks of `text` that hold a position in `near`.

    jieba cuts each run of Han/alphanumeric characters (its `re_han_internal` block) on its own, so these tokens
    are the ones a cut of the whole text gives. An empty separator token ends each block."""
    posseg = _posseg()
    blocks = [m.span() for m in posseg.re_han_internal.finditer(text)]
    starts = [a for a, _ in blocks]
    chosen = sorted({i for p in near if (i := bisect.bisect_right(starts, p) - 1) >= 0 and p < blocks[i][1]})
    out: list[tuple[int, int, str, str]] = []
    for i in chosen:
        a, b = blocks[i]
        pos = a
        for pair in posseg.cut(text[a:b]):
            out.append((pos, pos + len(pair.word), pair.word, pair.flag))
            pos += len(pair.word)
        out.append((b, b, "", "x"))
    return out


def _is_zh_name(word: str) -> bool:
    return (2 <= len(word) <= 4 and word not in _PUBLIC_NAMES and word not in _TCM_PREFIXES
            and not any(word[:k] in _TCM_HERBS for k in (2, 3)) and word[-1] not in "你我他她它们并和了的吗呢吧啊度性率" and _ZH_NAME_SHAPE.fullmatch(word) is not None
            and not _NOT_NAMES.match(word) and not (len(word) == 4 and not _COMPOUND_RX.match(word)))


_CUE_NAME_NEXT = re.compile(
    r"[男女今主说是的，,、。；;\s(（:：\d]|[一二三四五六七八九十两]+岁|昨|前|最近|对|有|在|从|经常|术后|入院|"
    r"咳|发|头|胸|腹|糖|怀|孕|乳|右|左|今年|代诉|复诊|患|得|问|做|想|让|要|也|都|还|已经|住|去|查|吃|被|这|那|"
    r"慢阻肺|慢性|肺|肝|肾|心脏|心梗|心衰|高血压|脑|癌|哮喘|癫痫|痛风|中风|血压|血糖|过敏|感冒|肚子")

Token = tuple[int, int, str, str]  # start, end, word, jieba flag


def _is_nr(tok: Token) -> bool:
    return tok[3].startswith("nr")


def _tagged_names(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """Names jieba tags (`nr*`; a lone surname joined with the given name after it) between ordinary neighbours."""
    spans, k = [], 0
    while k < len(toks):
        s, _, w, f = toks[k]
        if not (_is_nr(toks[k]) or (f == "ns" and re.fullmatch(_COMPOUND, w))):
            k += 1
            continue
        j = k
        if j + 1 < len(toks) and _is_nr(toks[j + 1]) and len(toks[j + 1][2]) <= 2 and (
                len(w) == 1 or re.fullmatch(_COMPOUND, w)):
            j += 1  # 冉 + 小雨, 欧阳 + 娜娜
        e = toks[j][1]
        name, before, after = text[s:e], text[max(0, s - 1):s], _ZH_AFTER_NAME.match(text[e:])
        listed = before == "、" or text[e:e + 1] == "、" or _DOSE_AFTER.match(text, e) is not None  # a list item, a dose
        # A two-character name needs a word after it, not just punctuation.
        if (_is_zh_name(name) and not listed and _ZH_BEFORE_NAME.search(before) and after
                and (len(name) > 2 or re.match(r"[\u4e00-\u9fff]", after.group(0)))):
            spans.append((s, e))
        k = j + 1
    return spans


def _names_after_cues(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """A family name + given name right after a cue word (患者张伟说, 我叫欧阳娜娜，, 姓名：李娜), even where jieba
    does not tag it, unless jieba reads an ordinary word there (程序员, 高热, 严重)."""
    at_start = {t[0]: t for t in toks}
    spans = []
    cues = [(m, False) for m in _ZH_CUE_BEFORE.finditer(text)] + [(m, True) for m in _ZH_KIN_CUE.finditer(text)]
    for m, kin in cues:
        at = m.end()
        tok = at_start.get(at)
        if tok is not None and not re.fullmatch(_COMPOUND, tok[2]):  # 慕容 + 振华: tried by length below
            if _is_nr(tok) and _is_zh_name(tok[2]):
                spans.append((at, tok[1]))
                continue
            # jieba reads an ordinary word there; after a kinship word a place or proper noun (郑国 + 强) may
            # still start a name.
            # After a naming verb (他叫, 姓名：) what follows is a name whatever jieba makes of it (周奕辰 as an idiom).
            naming = not kin and re.search("叫|姓名|名字", m.group(0)) is not None
            if len(tok[2]) >= 2 and not naming and not (kin and tok[3][:2] in ("ns", "nz")):
                continue
        for length in (4, 3) if kin else (4, 3, 2):  # four characters only with a compound surname
            cand, rest = text[at:at + length], text[at + length:]
            if (len(cand) == length and _is_zh_name(cand) and (length < 4 or re.match(_COMPOUND, cand))
                    and (_ZH_NAME_END.match(rest) or _ZH_CUE_AFTER.match(rest) or _CUE_NAME_NEXT.match(rest))):
                spans.append((at, at + length))
                break
    return spans


# A family name + a title or form of address (李总, 张老师, 王医生): the pair names a person. Family-name characters
# that are also prepositions or adverbs (和医生说, 向医生咨询, 由医生决定) are left out.
_TITLE_SURNAMES = "".join(c for c in _SINGLE if c not in "和向由连但那于时全常明成平乐强国都云来应相信")
_ZH_SURNAME_TITLE = re.compile(
    rf"(?:(?<![\u4e00-\u9fff])|(?<=[找问跟给请让叫对是帮替陪]))((?:{_COMPOUND}|[{_TITLE_SURNAMES}])"
    r"(?:总|老师|主任|医生|大夫|经理|老板|教授|律师|护士长|护士|师傅|院长|书记|局长|处长|科长|校长|工|姐|哥|阿姨|叔叔))"
    r"(?=[^\u4e00-\u9fff]|$|您|你|让|说|叫|问|的|在|是|和|跟|也|都|今|昨|最近|现在|刚|要|想|发|有)")


def _names_before_titles(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """A name right before a greeting or title, as answers address people: 张伟您好, 李娜女士, 王秀兰阿姨; before a
    clinician's title (周文斌医生, 李娜护士) or 说 only where jieba tags the name (`nr`), so 全科医生 and 皮肤科医生
    stay."""
    at_start = {t[0]: t for t in toks}
    spans = []
    for rx, tagged in ((_ZH_CUE_AFTER, False), (_ZH_TITLE_AFTER, True)):
        for m in rx.finditer(text):
            for length in (3, 2, 4):
                st = m.start() - length
                if st < 0 or not _is_zh_name(text[st:m.start()]):
                    continue
                starts_word = st == 0 or not re.match(r"[\u4e00-\u9fff]", text[st - 1]) or st in at_start
                needs_tag = tagged or m.group(0) == "说"
                if starts_word and (not needs_tag or (st in at_start and _is_nr(at_start[st])
                                                      and at_start[st][1] == m.start())):
                    spans.append((st, m.start()))
                    break
    return spans


_NAME_BEFORE_CHARS = frozenset("和跟与同带给让帮找替陪问叫是")
_SURNAME_CHAR_RX = re.compile("[" + "".join(sorted(_SURNAME_CHARS)) + "]")


def _tagged_candidates(text: str) -> list[int]:
    """Starts of the spans `_tagged_names` could report, found from the text alone (family name, neighbours and
    shape): where there is none, no jieba token can make a name."""
    out = []
    for m in _SURNAME_CHAR_RX.finditer(text):
        s = m.start()
        if s and _HAN.match(text[s - 1]) and text[s - 1] not in _NAME_BEFORE_CHARS:
            continue
        for length in (2, 3, 4):
            e = s + length
            if e > len(text):
                break
            after = _ZH_AFTER_NAME.match(text, e)
            if after and (length > 2 or _HAN.match(after.group(0))) and _is_zh_name(text[s:e]):
                out.append(s)
                break
    return out


def _zh_name_spans(text: str) -> list[tuple[int, int]]:
    if not _HAN.search(text):
        return []
    titled = [m.span(1) for m in _ZH_SURNAME_TITLE.finditer(text)]
    near = _tagged_candidates(text)
    near += [m.end() for rx in (_ZH_CUE_BEFORE, _ZH_KIN_CUE) for m in rx.finditer(text)]
    near += [m.start() - 1 for rx in (_ZH_CUE_AFTER, _ZH_TITLE_AFTER) for m in rx.finditer(text) if m.start()]
    if not near:
        return titled
    toks = _zh_tokens(text, near)
    return titled + _tagged_names(text, toks) + _names_after_cues(text, toks) + _names_before_titles(text, toks)


def _en_name_spans(text: str) -> list[tuple[int, int]]:
    """Names after a cue word (up to the first capitalised word that is not a name), and full names that the
    gazetteer recognises without one."""
    spans = []
    for m in _EN_CUES.finditer(text):
        end = None
        for w in re.finditer(rf"{_PARTICLE}(?= )|[^ -]+", m.group(1)):
            if _PARTICLE_RX.match(w.group(0)) and w.group(0)[0].islower():
                continue  # a particle belongs to the name only when a surname follows it
            if w.group(0) in _EN_NOT_NAMES:
                break
            end = m.start(1) + w.end()
        if end is not None:
            spans.append((m.start(1), end))
    return spans + _gazetteer_name_spans(text)


_PHONE_RUN = re.compile(r"[\d(+][\d\s().+\-/]*\d")


def _phone_spans(view: str) -> list[tuple[int, int]]:
    spans = []
    if any(sum(c.isdigit() for c in m.group(0)) >= 7 for m in _PHONE_RUN.finditer(view)):
        spans += _matched_phone_spans(view)
    # Mainland mobiles inside other text (no separators), which the matcher can miss next to CJK characters.
    for m in re.finditer(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)", view):
        spans.append((m.start(), m.end()))
    return spans


_PHONE_CUE = re.compile(r"(?:mobile|phone|tel|cell|call|text|ring|whatsapp|fax|电话|手机|座机|联系|热线|打)\W{0,3}(?:is |on |me on |at )?$",
                        re.I)


def _matched_phone_spans(view: str) -> list[tuple[int, int]]:
    """libphonenumber's matches (run only on text with a run of 7+ digits: no shorter number is valid): valid
    numbers for the CN, US and GB rules, and numbers that are only *possible* (a reserved range, as in fiction)
    when written with an international prefix or right after a phone word."""
    import phonenumbers

    spans = []
    for region in ("CN", "US", "GB"):
        for match in phonenumbers.PhoneNumberMatcher(view, region, leniency=phonenumbers.Leniency.POSSIBLE):
            digits = re.sub(r"\D", "", match.raw_string)
            if digits in PUBLIC_NUMBERS or digits.lstrip("0") in PUBLIC_NUMBERS:
                continue
            if not (phonenumbers.is_valid_number(match.number) or match.raw_string.startswith("+")
                    or _PHONE_CUE.search(view[max(0, match.start - 16):match.start])):
                continue
            spans.append((match.start, match.end))
    return spans


# Public hotlines that answers must be able to quote (crisis lines, poison control, emergency numbers):
# never scrubbed. Compared on digits only.
PUBLIC_NUMBERS = frozenset({
    "4001619995",  # 全国心理援助热线
    "01082951332",  # 北京心理危机研究与干预中心
    "1082951332",
    "18002221222",  # US Poison Control
    "8002221222",
    "18002738255",  # US National Suicide Prevention Lifeline (old number)
    "8002738255",
    "12356", "12320", "120", "110", "119", "911", "988", "999", "112",
})

# Numbers checked by a maintained validator (python-stdnum, ipaddress) before they count.
_RIC = re.compile(r"(?<![\dA-Za-z])([1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx])(?![\dA-Za-z])")
_RIC15 = re.compile(r"(?<![\dA-Za-z])([1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3})(?![\dA-Za-z])")
_ID_LABEL = re.compile(r"(?:身份证|身份号|证件|公民身份|\bID\b|identity|\bRIC\b)[^\n]{0,12}$", re.I)
_CARD = re.compile(r"(?<![\d+-])(\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(\d{3}-\d{2}-\d{4})(?![\d-])")
_NHS = re.compile(r"(?<![\d])(\d{3} ?\d{3} ?\d{4})(?![\d])")
_NOT_CARD = re.compile(r"(?:\blot|\bbatch|\bref|\bserial|barcode|批号|批次|条码|订单号?|单号)\W{0,3}(?:no\.?|number|#)?\W{0,2}$", re.I)
# Vehicle identification numbers (ISO 3779): 17 characters without I, O, Q; the check digit (9th character, ISO 3779
# / FMVSS 115, also required by China's GB 16735) is verified unless a VIN label (车架号, VIN …) comes first.
_VIN = re.compile(r"(?<![A-Za-z0-9])((?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17})(?![A-Za-z0-9])")
_VIN_LABEL = re.compile(r"(?:车架号|车架号码|车辆识别(?:代号|代码|号|码)|\bVIN\b|chassis (?:no\.?|number))\W{0,4}$", re.I)
_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGHJKLMNPRSTUVWXYZ",
                                                             (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_check_ok(vin: str) -> bool:
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True)) % 11
    return vin[8] == ("X" if total == 10 else str(total))


_IP_CUE = re.compile(r"(?:\bIP|address|地址|log ?in|logon|portal|server|host|router|from|登录|上网|网络)", re.I)
_IPV4 = re.compile(r"(?<![\d.])((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])((?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{3,39}(?:%\w+)?)(?![0-9A-Za-z:])")


def _validated_spans(view: str) -> list[tuple[str, int, int]]:
    """Identifiers whose check digits or structure a validator confirms:
    - PRC resident ID (GB 11643 check digit, python-stdnum `cn.ric`); one failing its check digit only after an ID
      label (身份证, ID …) — a mistyped ID someone labelled is still theirs; an unlabelled 18-digit number that
      fails is left to the other detectors. The old 15-digit form (no check digit) needs a valid birth date.
    - bank cards: 13–19 digits, contiguous or in groups of four, passing Luhn (`stdnum.luhn`); a number failing
      Luhn is scrubbed only by the labelled-account pattern (卡号, card number …).
    - IBAN with its ISO 7064 check (`stdnum.iban`), trailing groups dropped until it validates.
    - US SSN in its 3-2-4 shape that `stdnum.us.ssn` accepts (no 000/666/9xx areas, no advertising numbers).
    - NHS numbers (`stdnum.gb.nhs`, modulus 11) in a text that says NHS.
    - vehicle identification numbers (17 characters) whose ISO 3779 check digit holds, or after a VIN/车架号 label.
    - IPv4 / IPv6 addresses that `ipaddress` parses: an IPv4 with small octets only (2.1.0.3, a version) needs an IP
      cue before it; an IPv6 needs three groups.
    A Luhn-valid number after lot/batch/serial/批号 is a product number, not a card."""
    if not any(c.isdigit() for c in view):
        return []
    from stdnum import iban, luhn
    from stdnum.cn import ric
    from stdnum.gb import nhs
    from stdnum.us import ssn

    out: list[tuple[str, int, int]] = []
    for m in _RIC.finditer(view):
        if ric.is_valid(m.group(1)) or _ID_LABEL.search(view[max(0, m.start() - 24):m.start()]):
            out.append(("ID", *m.span(1)))
    for m in _RIC15.finditer(view):
        out.append(("ID", *m.span(1)))
    for m in _CARD.finditer(view):
        digits = re.sub(r"\D", "", m.group(1))
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits) and not _NOT_CARD.search(view[max(0, m.start() - 16):m.start()]):
            out.append(("ACCOUNT", *m.span(1)))
    for m in _IBAN.finditer(view):
        value = m.group(1)
        while len(value.replace(" ", "")) >= 15:
            if iban.is_valid(value):
                out.append(("ACCOUNT", m.start(1), m.start(1) + len(value)))
                break
            value = value[:-1].rstrip()
    for m in _VIN.finditer(view):
        if _vin_check_ok(m.group(1)) or _VIN_LABEL.search(view[max(0, m.start() - 16):m.start()]):
            out.append(("PLATE", *m.span(1)))
    for m in _SSN.finditer(view):
        if ssn.is_valid(m.group(1)):
            out.append(("ID", *m.span(1)))
    if "NHS" in view:
        for m in _NHS.finditer(view):
            if nhs.is_valid(m.group(1).replace(" ", "")):
                out.append(("ID", *m.span(1)))
    if "." in view or ":" in view:
        import ipaddress

        for rx in (_IPV4, _IPV6):
            for m in rx.finditer(view):
                value = m.group(1)
                if rx is _IPV4 and not (_IP_CUE.search(view[max(0, m.start() - 30):m.start()])
                                        or sum(len(o) >= 2 for o in value.split(".")) >= 2):
                    continue  # a version or protocol step (2.1.0.3) without an IP cue
                if rx is _IPV6 and sum(bool(g) for g in value.split(":")) < 3:
                    continue  # ::1 and other short forms
                try:
                    ipaddress.ip_address(value.split("%")[0])
                except ValueError:
                    continue
                out.append(("IP", *m.span(1)))
    return out


_PLACEHOLDER = {"NAME": "[NAME]", "PHONE": "[PHONE]", "ID": "[ID]", "EMAIL": "[EMAIL]", "MRN": "[MRN]", "DOB": "[DOB]",
                "ADDRESS": "[ADDRESS]", "ACCOUNT": "[ACCOUNT]", "HANDLE": "[HANDLE]", "URL": "[URL]", "IP": "[IP]",
                "PLATE": "[PLATE]", "JOB": "[JOB]"}
# Overlaps: an earlier kind wins (an ID number is not also a phone number), then the longer span.
_PRIORITY = ["URL", "EMAIL", "ID", "MRN", "ACCOUNT", "IP", "HANDLE", "DOB", "PHONE", "PLATE", "ADDRESS", "JOB", "NAME"]


def find_identifiers(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every identifier in `text` (positions in `text`), non-overlapping, in order."""
    if not text:
        return []
    norm, where = _normalise(text)
    view = _digit_view(norm)
    found: list[tuple[str, int, int]] = []
    for kind, pattern, group in _PATTERNS:
        for m in pattern.finditer(view):
            found.append((kind, m.start(group), m.end(group)))
    found += _validated_spans(view)
    found += [("PHONE", s, e) for s, e in _phone_spans(view)]
    found += [("NAME", s, e) for s, e in _zh_name_spans(norm) + _en_name_spans(norm)]
    found.sort(key=lambda t: (_PRIORITY.index(t[0]), -(t[2] - t[1]), t[1]))
    taken: list[tuple[str, int, int]] = []
    for kind, s, e in found:
        if s < e and all(e <= ts or s >= te for _, ts, te in taken):
            taken.append((kind, s, e))
    return sorted(((kind, where[s], where[e - 1] + 1) for kind, s, e in taken), key=lambda t: t[1])


def scrub_with_counts(text: str) -> tuple[str, Counter]:
    """Replace personal identifiers in `text`; return the new text and a count per identifier kind."""
    counts: Counter = Counter()
    if not text:
        return text, counts
    out, last = [], 0
    for kind, s, e in find_identifiers(text):
        out.append(text[last:s])
        out.append(_PLACEHOLDER[kind])
        counts[kind] += 1
        last = e
    out.append(text[last:])
    return "".join(out), counts


def scrub(text: str) -> str:
    """Text with phone numbers, ID numbers, emails, record numbers, dates of birth, addresses and names replaced."""
    return scrub_with_counts(text)[0]


def has_pii(text: str) -> bool:
    return bool(find_identifiers(text))
