"""flask-wtf forms: every form carries a CSRF token and validates before anything is written."""
from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (HiddenField, IntegerField, PasswordField, RadioField, SelectField, SelectMultipleField,
                     StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, NumberRange, Optional, ValidationError

from .render import RenderError, check_template


def options(pairs) -> list[SelectChoice]:
    """(value, label) pairs as the choices of a select or radio field (WTForms 3.3 deprecates
    plain tuples)."""
    return [SelectChoice(value, label) for value, label in pairs]


def normalise_email(value: str) -> str:
    """Syntax and normalisation only: no DNS look-ups from a web request."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValidationError(f"not a valid email address: {exc}") from None


class EmailAddress:
    def __call__(self, form, field):
        if field.data:
            field.data = normalise_email(field.data)


class JinjaTemplate:
    def __init__(self, what):
        self.what = what

    def __call__(self, form, field):
        try:
            check_template(field.data or "", self.what)
        except RenderError as exc:
            raise ValidationError(str(exc)) from None


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1000)])


class ContactForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320), EmailAddress()])
    name = StringField("Name", validators=[Optional(), Length(max=500)])
    attributes = TextAreaField("Attributes (JSON object)", validators=[Optional(), Length(max=100_000)])
    list_id = SelectField("Add to list", coerce=int, validators=[Optional()])


class ListForm(FlaskForm):
    name = StringField("List name", validators=[DataRequired(), Length(max=200)])
    description = StringField("Description", validators=[Optional(), Length(max=1000)])


class CsvUploadForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired()])
    # Its own id: the contacts page shows this form next to ContactForm, whose select is list_id.
    list_id = SelectField("Add to list", coerce=int, validators=[Optional()], id="upload_list_id")


class CampaignForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    from_name = StringField("From name", validators=[Optional(), Length(max=200)])
    from_email = StringField("From address", validators=[DataRequired(), Length(max=320), EmailAddress()])
    reply_to = StringField("Reply-to", validators=[Optional(), Length(max=320), EmailAddress()])
    subject = StringField("Subject", validators=[DataRequired(message="The subject cannot be empty."),
                                                 Length(max=998), JinjaTemplate("Subject")])
    body_html = TextAreaField("HTML body", validators=[DataRequired(), Length(max=1_000_000), JinjaTemplate("Body")])
    target = RadioField("Send to", choices=options([("list", "a list"), ("segment", "a segment version")]), default="list")
    list_id = SelectField("Send to list", coerce=int, validators=[Optional()])
    segment_version_id = SelectField("Send to segment version", coerce=int, validators=[Optional()])
    exclude_list_ids = SelectMultipleField("Exclude members of lists", coerce=int, validators=[Optional()])
    exclude_segment_version_ids = SelectMultipleField("Exclude segment versions", coerce=int, validators=[Optional()])
    merge_version_id = SelectField("Merge data for {{ data.* }}", coerce=int, validators=[Optional()])
    max_attempts = IntegerField("Attempts per email", default=5, validators=[NumberRange(1, 20)])

    def validate(self, extra_validators=None):
        """The list or the segment version, whichever the target says, must be chosen; the
        other select may hold anything the browser sent and is ignored."""
        super().validate(extra_validators)
        to_segment = self.target.data == "segment"
        chosen, other = ((self.segment_version_id, self.list_id) if to_segment
                         else (self.list_id, self.segment_version_id))
        other.errors = []
        if not chosen.errors and not chosen.data:
            chosen.errors = [f"Choose the {'segment version' if to_segment else 'list'} to send to."]
        return not any(f.errors for f in self) and not self.form_errors


class SegmentForm(FlaskForm):
    """The rule builder: the rule tree travels as JSON, checked by app/services/rules.py."""
    name = StringField("Segment name", validators=[Optional(), Length(max=200)])
    rules = HiddenField(validators=[DataRequired(message="The rule is missing: reload the page."),
                                    Length(max=1_000_000)])


class SaveListForm(FlaskForm):
    list_name = StringField("List name", validators=[DataRequired(), Length(max=200)])


class AttachmentForm(FlaskForm):
    file = FileField("Attachment", validators=[FileRequired()])


class PreviewForm(FlaskForm):
    contact_email = StringField("Preview for contact", validators=[DataRequired(), Length(max=320)])


class TestSendForm(FlaskForm):
    to = StringField("Send a test to", validators=[DataRequired(), Length(max=320), EmailAddress()])
    # Its own id: the campaign page shows this form next to PreviewForm's contact_email.
    contact_email = StringField("Render as contact (optional)", validators=[Optional(), Length(max=320)],
                                id="test_contact_email")


class ActionForm(FlaskForm):
    """A bare form for buttons (send, delete, logout): it exists for its CSRF token."""


BIGINT = NumberRange(1, 2**63 - 1, message="must be a positive whole number")


class JournalFilterForm(FlaskForm):
    """The journal page's filters (a GET form: nothing to protect with a token)."""

    class Meta:
        csrf = False

    campaign = IntegerField("Campaign #", validators=[Optional(), BIGINT])
    kind = StringField("Event", validators=[Optional(), Length(max=100)])
    email = StringField("Address", validators=[Optional(), Length(max=320)])
    before = IntegerField(validators=[Optional(), BIGINT])


DEAD_LETTER_VIEWS = ("open", "replayed", "discarded", "all")


class DeadLetterFilterForm(FlaskForm):
    class Meta:
        csrf = False

    campaign = IntegerField("Campaign #", validators=[Optional(), BIGINT])
    status = StringField("Show", default="open",
                         validators=[Optional(), AnyOf(DEAD_LETTER_VIEWS, message="open, replayed, discarded or all")])
    unassigned = StringField(validators=[Optional(), Length(max=5)])
    before = IntegerField(validators=[Optional(), BIGINT])
